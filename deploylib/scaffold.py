"""``deploylib init``: the starting files of a project. Files that exist are left as they are
(``--force`` overwrites them) and the report says which; .gitignore gets the lines it lacks."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deploylib.ci_workflow import ENVIRONMENTS, github_workflow, requirements_deploy
from deploylib.errors import ConfigError
from deploylib.presets import PRESETS, preset_files
from deploylib.repository import work_tree

DEPLOY_TOML = """\
app = "{app}"
deploy_to = "/srv/{app}"
keep_releases = 5
pipeline = "web"
shared_dirs = ["log"]
shared_files = [".env"]
{settings}
[environments.dev]
hosts = ["local"]
deploy_to = ".deploy/dev"

# [environments.prod]
# hosts = [{prod_hosts}]
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

CI_ENVIRONMENTS = """
# the environments the CI workflow deploys (.github/workflows/deploy.yml): fill in the hosts,
# and give the repository the secrets SSH_PRIVATE_KEY, SSH_KNOWN_HOSTS and DOTENV (per GitHub
# environment: the content of .env.staging / .env.production)
[environments.staging]
hosts = ["deploy@192.0.2.10"]
env_file = ".env.staging"

[environments.production]
hosts = ["deploy@192.0.2.20"]
env_file = ".env.production"
confirm = true
"""

#: what a project's .gitignore gets: env files hold secrets; .deploy/ holds local deploys;
#: .deploylib/ the logs of deploys run from here
GITIGNORE = (".env*", "!.env.example", ".deploy/", ".deploylib/")


@dataclass
class InitReport:
    """What ``init`` did: files written, files left as they were, .gitignore lines added, and
    what the user still has to do."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)


def init(
    project_dir: Path,
    *,
    ci: str | None = None,
    force: bool = False,
    preset: str | None = None,
) -> InitReport:
    """Write the scaffold into ``project_dir``: the files that are missing (all of them with
    ``force``), and the .gitignore lines it lacks. ``preset``: the files of a Python web app
    (see ``presets``)."""
    if ci not in (None, "github"):
        raise ConfigError(f"unknown CI {ci!r} (supported: github)", key="--ci")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(
            f"unknown preset {preset!r} (supported: {', '.join(PRESETS)})", key="--preset"
        )
    app = re.sub(r"[^a-z0-9_-]", "-", project_dir.resolve().name.lower()).strip("-_") or "app"
    if not app[0].isalnum():
        app = "app"
    report = InitReport()
    chosen = (
        preset_files(project_dir, preset, in_git=work_tree(project_dir) is not None)
        if preset is not None
        else None
    )
    toml = DEPLOY_TOML.format(
        app=app,
        settings=chosen.settings if chosen else "",
        prod_hosts=chosen.prod_hosts if chosen else '"deploy@203.0.113.10"',
    )
    files = {
        project_dir / "deploy.toml": toml + (CI_ENVIRONMENTS if ci == "github" else ""),
        project_dir / "pipelines" / "web.py": PIPELINE.format(),
        project_dir / "tasks.py": TASKS,
        project_dir / ".env.example": ENV_EXAMPLE,
    }
    if chosen is not None:
        files.update(chosen.files)
        report.todo += chosen.todo
    if ci == "github":
        requirements, pinned = requirements_deploy()
        files[project_dir / ".github" / "workflows" / "deploy.yml"] = github_workflow()
        files[project_dir / "requirements-deploy.txt"] = requirements
        if not pinned:
            report.todo.append(
                "pin deploylib in requirements-deploy.txt (where CI installs it from)"
            )
    for path, content in files.items():
        # a link (even a dangling one) is left alone: writing through it would change a file
        # outside the project
        if path.is_symlink() or (path.exists() and not force):
            report.kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        report.written.append(path)
    if ci == "github" and project_dir / "deploy.toml" in report.kept:
        lacking = _environments_lacking(project_dir / "deploy.toml")
        if lacking:
            report.todo.append(
                f"add [environments.{'] and [environments.'.join(lacking)}] to deploy.toml: "
                "the CI workflow deploys them"
            )
    gitignore = project_dir / ".gitignore"
    if gitignore.is_symlink():
        report.todo.append(f"add {' '.join(GITIGNORE)} to .gitignore (a link: left alone)")
    else:
        report.ignored = _ignore(gitignore)
    return report


def _environments_lacking(deploy_toml: Path) -> list[str]:
    """The CI workflow's environments an existing deploy.toml does not define."""
    try:
        defined = tomllib.loads(deploy_toml.read_text(encoding="utf-8")).get("environments", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        defined = {}
    return [env for env in ENVIRONMENTS if env not in defined]


def _ignore(gitignore: Path) -> list[str]:
    """Add the lines of ``GITIGNORE`` that ``gitignore`` lacks; return them."""
    text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    # git ignores trailing spaces (not tabs) and keeps leading ones: `  .env*` is another pattern
    have = {line.rstrip(" \r") for line in text.splitlines()}
    missing = [line for line in GITIGNORE if line not in have]
    if missing:
        prefix = "" if not text or text.endswith("\n") else "\n"
        gitignore.write_text(
            text + prefix + "# deploylib\n" + "".join(f"{line}\n" for line in missing),
            encoding="utf-8",
        )
    return missing
