"""What a deploy ships, settled before any host is contacted: the revision it records, and
whether the working tree it would pack holds changes that are not committed.

In a git work tree the revision (``--revision``, default ``HEAD``) must name a commit; the
deploy records that commit's full id (``git rev-parse --verify --end-of-options REV^{commit}``).
A build that packs the working tree (a command build) of a work tree with uncommitted changes
is refused, or, with ``allow_dirty`` and in a dry run, warned about: the release would not be
that commit, and its revision says so (``<id>-dirty``). A ``build(git=...)`` packs the commit
itself, so changes do not matter to it. Outside a work tree the revision is a free label, as
it always was, and a git build is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploylib.config import Environment
from deploylib.errors import ConfigError
from deploylib.pipeline import Pipeline
from deploylib.repository import WorkTree, work_tree
from deploylib.steps import Build

#: a revision outside a git work tree: a free label, checked
REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/@:-]{0,127}")
#: the changed paths a refusal lists
SHOWN_CHANGES = 5
#: what the revision of a release packed from a changed working tree ends with
DIRTY_SUFFIX = "-dirty"


@dataclass(frozen=True)
class Source:
    """The revision a deploy records, and what to warn about before it starts."""

    revision: str
    warnings: tuple[str, ...] = ()


def settle(
    env: Environment,
    pipeline: Pipeline,
    revision: str | None,
    *,
    allow_dirty: bool = False,
    dry_run: bool = False,
    outputs: Sequence[Path] = (),
) -> Source:
    """The deploy's revision, after the checks above; ``ConfigError`` (exit 2) when refused.
    ``outputs``: files the deploy writes itself (its ``--events`` file), never changes."""
    tree = work_tree(env.project_dir)
    builds = [s for s in pipeline.flat() if isinstance(s, Build)]
    if tree is None:
        for git_build in (b for b in builds if b.git is not None):
            raise ConfigError(
                f"build(git={git_build.git!r}) archives a commit, but {env.project_dir} is not "
                "in a git work tree: commit the project to git, or build with a command",
                file=str(env.pipeline_file(pipeline.name or None)),
                key="step build",
            )
        return Source(label(revision))
    commit = commit_of(tree, revision)
    if not any(b.git is None for b in builds):
        return Source(commit)
    # a deploy_to inside the project dir is deploylib's own output, not a change to pack
    try:
        changes = tree.changes(ignore=(Path(env.deploy_to), *outputs))
    except OSError as exc:
        raise ConfigError(f"cannot tell whether {env.project_dir} has changes: {exc}") from None
    if not changes:
        return Source(commit)
    listed = ", ".join(changes[:SHOWN_CHANGES])
    if len(changes) > SHOWN_CHANGES:
        listed += f" and {len(changes) - SHOWN_CHANGES} more"
    what = (
        f"the build packs the working tree of {env.project_dir}, which has changes not "
        f"committed: {listed}"
    )
    if not (allow_dirty or dry_run):
        raise ConfigError(
            f"{what}; the release would not be commit {commit[:12]}. Commit them (or ignore "
            "them in .gitignore), archive the commit with build(git=...), or deploy anyway "
            "with --allow-dirty"
        )
    if dry_run and not allow_dirty:
        warning = f"{what}: a deploy would refuse them without --allow-dirty"
    else:
        warning = f"{what}: deploying them anyway (--allow-dirty) as {commit[:12]}{DIRTY_SUFFIX}"
    return Source(commit + DIRTY_SUFFIX, (warning,))


def resolve_revision(env: Environment, revision: str | None) -> str:
    """The revision a deploy of ``env`` records: in a git work tree the full id of the commit
    ``revision`` (default ``HEAD``) names, else the label given (or ``unknown``)."""
    tree = work_tree(env.project_dir)
    return label(revision) if tree is None else commit_of(tree, revision)


def commit_of(tree: WorkTree, revision: str | None) -> str:
    """The full id of the commit ``revision`` (default ``HEAD``) names in ``tree``."""
    commit = tree.commit("HEAD" if revision is None else revision)
    if commit is not None:
        return commit
    if revision is None:
        raise ConfigError(
            f"HEAD names no commit in the git repository at {tree.top} (no commit yet?): "
            "commit first",
            key="--revision",
        )
    raise ConfigError(
        f"{revision!r} names no commit in the git repository at {tree.top}", key="--revision"
    )


def label(revision: str | None) -> str:
    """A revision outside a git work tree: the label given, checked, or ``unknown``."""
    if revision is None:
        return "unknown"
    if not REVISION_RE.fullmatch(revision):
        raise ConfigError(
            f"not a revision: {revision!r} (letters, digits and ._+/@:- only, at most 128)",
            key="--revision",
        )
    return revision
