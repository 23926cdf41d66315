"""The project's git work tree, as a deploy asks about it: where it is, the commit a revision
names, and the changes not committed under the project dir.

Every question is one ``git`` process run from an argv list (never a shell), with revisions
and paths behind ``--end-of-options`` or ``--``: a revision such as ``--output=/tmp/x`` or
``$(touch /tmp/p)`` is only ever a name git looks up. A project outside a work tree (or a
machine without git) has no ``WorkTree``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: how long one git question may take
GIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkTree:
    """A git work tree that holds the project dir ``project_dir``; ``top`` is its top level."""

    top: Path
    project_dir: Path

    def commit(self, revision: str) -> str | None:
        """The full id of the commit ``revision`` names, or None when it names none."""
        if not revision or "\0" in revision:
            return None
        wanted = f"{revision}^{{commit}}"
        found = _git(
            self.project_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", wanted
        )
        commit = found.stdout.strip() if found.returncode == 0 else ""
        return commit if is_object_id(commit) else None

    def changes(self, *, ignore: tuple[Path, ...] = ()) -> list[str]:
        """Paths under the project dir that differ from HEAD: modified, staged, deleted, or
        untracked and not ignored; relative to the top level. Paths under ``ignore`` (such as a
        ``deploy_to`` inside the project dir, deploylib's own output) are left out."""
        options = ("--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
        status = _git(self.project_dir, "status", *options, "--", ".")
        if status.returncode != 0:
            raise OSError(f"git status failed: {status.stderr.strip()}")
        skipped = [p.resolve() for p in ignore]
        paths = []
        for entry in status.stdout.split("\0"):
            if len(entry) < 4:
                continue
            path = entry[3:]
            full = (self.top / path).resolve()
            if any(full == p or p in full.parents for p in skipped):
                continue
            paths.append(path)
        return paths


def work_tree(project_dir: Path) -> WorkTree | None:
    """The git work tree holding ``project_dir``, or None (not in one, or no git here)."""
    found = _git(project_dir, "rev-parse", "--show-toplevel")
    top = found.stdout.strip()
    if found.returncode != 0 or not top:
        return None
    return WorkTree(Path(top), project_dir)


#: who deploys, when set: recorded in the release log instead of git's user.email
DEPLOYER = "DEPLOYLIB_USER"


def deployer(project_dir: Path) -> str:
    """Who deploys, for the release log: ``$DEPLOYLIB_USER``, else git's ``user.email`` (of the
    project dir's repository or the user's config), else the OS user."""
    named = os.environ.get(DEPLOYER, "").strip()
    if named:
        return named
    found = _git(project_dir, "config", "--get", "user.email")
    email = found.stdout.strip()
    if found.returncode == 0 and email and "\n" not in email:
        return email
    import getpass

    return getpass.getuser()


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        # a status must not take the index lock another git command of the user may want
        "GIT_OPTIONAL_LOCKS": "0",
    }
    argv = ["git", *args]
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:  # no git, or it hung
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def is_object_id(text: str) -> bool:
    """A full object id: 40 hex digits (SHA-1) or 64 (SHA-256)."""
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)
