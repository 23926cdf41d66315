"""``deploylib init``: the starting files of a project, never overwriting one that exists."""

from __future__ import annotations

import re
from pathlib import Path

from deploylib.errors import ConfigError

DEPLOY_TOML = """\
app = "{app}"
deploy_to = "/srv/{app}"
keep_releases = 5
pipeline = "web"
shared_dirs = ["log"]
shared_files = [".env"]

[environments.dev]
hosts = ["local"]
deploy_to = ".deploy/dev"

# [environments.prod]
# hosts = ["deploy@203.0.113.10"]
# env_file = ".env.prod"
# confirm = true
"""

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, http

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    switch(restart="echo restart your app here"),
    verify(http("http://{{host_address}}:8000/health"), attempts=10, wait=1),
)
"""

TASKS = """\
from deploylib.tasks import ns  # noqa: F401  (invoke deploy --env=dev, invoke rollback, ...)
"""

ENV_EXAMPLE = """\
# Copy to .env (and .env.<env> per environment). Every value here is a secret by default:
# it prints as *** and reaches your app through shared/.env and the environment of commands.
# DATABASE_URL=postgres://app:secret@db/app
"""

GITHUB_WORKFLOW = """\
name: deploy
on:
  push:
    branches: [main]
  workflow_dispatch:
concurrency:
  group: deploy
  cancel-in-progress: false
jobs:
  deploy:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install deploylib
      - run: deploylib deploy --env=prod --yes --events deploy-events.jsonl
"""


def init(project_dir: Path, *, ci: str | None = None) -> list[Path]:
    """Write the scaffold into ``project_dir``; refuse if any of its files exists."""
    if ci not in (None, "github"):
        raise ConfigError(f"unknown CI {ci!r} (supported: github)", key="--ci")
    app = re.sub(r"[^a-z0-9_-]", "-", project_dir.resolve().name.lower()).strip("-_") or "app"
    if not app[0].isalnum():
        app = "app"
    files = {
        project_dir / "deploy.toml": DEPLOY_TOML.format(app=app),
        project_dir / "pipelines" / "web.py": PIPELINE.format(),
        project_dir / "tasks.py": TASKS,
        project_dir / ".env.example": ENV_EXAMPLE,
    }
    if ci == "github":
        files[project_dir / ".github" / "workflows" / "deploy.yml"] = GITHUB_WORKFLOW
    existing = [path for path in files if path.exists()]
    if existing:
        raise ConfigError(
            "already exists; init writes nothing over existing files", file=str(existing[0])
        )
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return list(files)
