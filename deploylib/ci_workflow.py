"""The GitHub Actions workflow ``deploylib init --ci github`` writes, and the pinned reference it
installs deploylib from.

The workflow runs as written once the repository has its secrets: the project's tests first;
then staging on every push to main, production only when started by hand and approved (the
``production`` GitHub environment). It reads nothing but its checkout (``contents: read``),
pins every action to a commit, never runs two deploys of one environment at once, writes the
SSH key, ``known_hosts`` and ``.env.<env>`` from secrets without echoing them, and keeps the
deploy's events as an artifact. deploylib itself comes from ``requirements-deploy.txt``, pinned
to what this machine runs: a name alone could be registered on an index by anyone.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

#: actions pinned to the commit of a release (the tag it had, for people)
CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2"
SETUP_PYTHON = "actions/setup-python@0b93645e9fea7318ecaed2b359559ac225c90a2b  # v5.3.0"
UPLOAD_ARTIFACT = "actions/upload-artifact@b4b15b8c7c6ac21ea08fcf65892d2ee8f75cf882  # v4.4.3"

#: the environments the workflow deploys, each a GitHub environment of the same name
ENVIRONMENTS = ("staging", "production")

#: the first steps of every job: the checkout (its token not kept) and Python
_SETUP = """\
      - uses: {checkout}
        with:
          persist-credentials: false
      - uses: {setup_python}
        with:
          python-version: "3.11"
"""

_DEPLOY_JOB = """\
  {env}:
    needs: test
    if: {condition}
    runs-on: ubuntu-latest
    timeout-minutes: 30
    environment: {env}
    concurrency:
      group: deploy-{env}
      cancel-in-progress: false
    steps:
{setup}      - name: Install deploylib (pinned in requirements-deploy.txt)
        run: |
          if ! grep -Eq '^deploylib *(==|@ )' requirements-deploy.txt; then
            echo "::error::pin deploylib in requirements-deploy.txt"
            exit 1
          fi
          python -m pip install -r requirements-deploy.txt
      - name: SSH key, known hosts and .env.{env} from secrets
        env:
          SSH_PRIVATE_KEY: ${{{{ secrets.SSH_PRIVATE_KEY }}}}
          SSH_KNOWN_HOSTS: ${{{{ secrets.SSH_KNOWN_HOSTS }}}}
          DOTENV: ${{{{ secrets.DOTENV }}}}
        run: |
          umask 077
          mkdir -p ~/.ssh
          printf '%s\\n' "$SSH_PRIVATE_KEY" > ~/.ssh/id_ed25519
          printf '%s\\n' "$SSH_KNOWN_HOSTS" > ~/.ssh/known_hosts
          printf '%s\\n' "$DOTENV" > .env.{env}
      - name: Deploy {env}
        run: deploylib deploy --env {env} --yes --lock-wait 600 --events deploy-events.jsonl
      - name: Keep the deploy's events
        if: always()
        uses: {upload}
        with:
          name: deploy-events-{env}
          path: deploy-events.jsonl
          if-no-files-found: ignore
"""

_HEAD = """\
name: deploy
on:
  push:
    branches: [main]
  workflow_dispatch:
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    steps:
{setup}      - name: Run the project's tests
        run: |
          for file in requirements.txt requirements-dev.txt; do
            if [ -f "$file" ]; then python -m pip install -r "$file"; fi
          done
          if [ ! -d tests ]; then
            echo "no tests/ directory: nothing to test"
          elif python -c "import pytest" 2>/dev/null; then
            python -m pytest
          else
            echo "::error::tests/ exists but pytest is not in requirements(-dev).txt"
            exit 1
          fi
"""


def github_workflow() -> str:
    """The workflow's text."""
    pins = {"checkout": CHECKOUT, "setup_python": SETUP_PYTHON, "upload": UPLOAD_ARTIFACT}
    pins["setup"] = _SETUP.format(**pins)
    conditions = {
        "staging": "github.event_name == 'push'",
        "production": "github.event_name == 'workflow_dispatch' && github.ref == 'refs/heads/main'",
    }
    jobs = "".join(
        _DEPLOY_JOB.format(env=env, condition=conditions[env], **pins) for env in ENVIRONMENTS
    )
    return _HEAD.format(**pins) + jobs


def requirements_deploy() -> tuple[str, bool]:
    """The text of ``requirements-deploy.txt``, and whether it pins deploylib (else it says
    how to, and the workflow stops with that message until it does)."""
    pinned = pinned_requirement()
    if pinned:
        return f"# deploylib for CI, pinned to what `deploylib init` ran from\n{pinned}\n", True
    return (
        "# Pin deploylib here, e.g. to a commit of the repository you install it from:\n"
        "# deploylib @ git+https://example.invalid/your/deploylib.git@<40-hex commit>\n",
        False,
    )


def pinned_requirement() -> str | None:
    """A requirement for exactly the deploylib installed here: the VCS commit it came from
    (an install from a repository, or from a checkout with a remote), or the version an index
    gave; None when neither can be told."""
    try:
        dist = metadata.distribution("deploylib")
    except metadata.PackageNotFoundError:
        return None
    direct = dist.read_text("direct_url.json")
    if not direct:
        return f"deploylib=={dist.version}"  # installed from an index: that is where it lives
    info = json.loads(direct)
    vcs = info.get("vcs_info") or {}
    if vcs.get("commit_id"):
        return f"deploylib @ {vcs.get('vcs', 'git')}+{info['url']}@{vcs['commit_id']}"
    url = str(info.get("url", ""))
    if url.startswith("file://"):
        return _checkout_reference(Path(url.removeprefix("file://")))
    return None


def _checkout_reference(source: Path) -> str | None:
    """``deploylib @ git+REMOTE@COMMIT`` for a git checkout whose commit is on a remote."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    remote, commit = git("remote", "get-url", "origin"), git("rev-parse", "HEAD")
    if not remote.startswith(("https://", "ssh://", "git@")) or len(commit) != 40:
        return None  # a local path or no commit: CI could not fetch it
    if remote.startswith("git@"):
        remote = "ssh://" + remote.replace(":", "/", 1)
    return f"deploylib @ git+{remote}@{commit}"
