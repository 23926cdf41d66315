"""The built-in steps: ``Build`` (on this machine), ``Push``, ``Run``, ``Switch``, ``Verify``
and ``Rollback`` (on targets)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from deploylib.checks import Check
from deploylib.commands import Command, Operation
from deploylib.context import REGISTRY_PASSWORD, REGISTRY_USERNAME, StepContext
from deploylib.errors import ConfigError
from deploylib.remote import images
from deploylib.remote import release as remote_release
from deploylib.repository import is_object_id
from deploylib.steps.base import Retry, Step

REGISTRY_CREDENTIALS = frozenset({REGISTRY_USERNAME, REGISTRY_PASSWORD})


@dataclass(frozen=True)
class Build(Step):
    """Write the artifact on this machine: run ``command`` in the project dir (it packs the
    working tree), or, with ``git`` set, archive the deploy's commit: the directory ``git``
    (relative to the project dir, ``"."`` for all of it) as it is in that commit, its contents
    at the root of the artifact."""

    command: str = ""
    cwd: str | None = None
    git: str | None = None
    #: a container image instead (``{image}``): its template, and how ``docker build`` makes
    #: it from ``context`` (a directory relative to the project dir)
    image: str | None = None
    context: str = "."
    dockerfile: str | None = None
    target: str | None = None
    #: (name, value) pairs; a value None is taken from the environment by docker
    build_args: tuple[tuple[str, str | None], ...] = ()

    def operations(self, ctx: StepContext) -> list[Operation]:
        if self.image is not None:
            return [self.docker_build(ctx)]
        if self.git is not None:
            return [self.archive(ctx, self.git)]
        cwd = ctx.shell(self.cwd) if self.cwd else str(ctx.env.project_dir)
        return [ctx.command(self.command, cwd=cwd, description="build")]

    def archive(self, ctx: StepContext, path: str) -> Command:
        """``git archive`` of the deploy's commit, run in the archived directory: git takes the
        directory's tree from the commit, so its contents are at the root of the artifact. Every
        value is an argv word; the commit, a full object id, comes after ``--end-of-options``."""
        if not is_object_id(ctx.revision):
            raise ConfigError(
                f"build(git={path!r}) archives the deploy's commit, but the revision "
                f"{ctx.revision!r} is not a commit id: the project dir must be in a git work tree"
            )
        return Command.of(
            "git",
            "archive",
            "--format=tar.gz",
            f"--output={ctx.artifact}",
            "--end-of-options",
            ctx.revision,
            cwd=posixpath.normpath(posixpath.join(str(ctx.env.project_dir), path)),
            timeout=ctx.env.command_timeout,
            description="build",
        )

    def docker_build(self, ctx: StepContext) -> Command:
        """``docker build`` of ``context`` into the release's image, on this machine; build
        arguments' values and the Dockerfile path have their placeholders filled, each an argv
        word. The image is labelled with the app and the release."""
        args = {name: None if value is None else ctx.path(value) for name, value in self.build_args}
        command = images.build_command(
            ctx.values["image"],
            self.context,
            cwd=str(ctx.env.project_dir),
            dockerfile=ctx.path(self.dockerfile) if self.dockerfile else None,
            target=self.target,
            build_args=args,
            labels={images.APP_LABEL: ctx.env.app, images.RELEASE_LABEL: ctx.release},
            timeout=ctx.env.command_timeout,
        )
        # a build argument given by name alone takes its value from here, never from argv
        return replace(command, env=dict(ctx.env.variables))

    def templates(self) -> Iterable[str]:
        if self.image is not None:
            values = [v for _, v in self.build_args if v is not None]
            return [self.image, *values, *([self.dockerfile] if self.dockerfile else [])]
        if self.git is not None:
            return []
        return [self.command, *([self.cwd] if self.cwd else [])]


@dataclass(frozen=True)
class Push(Step):
    ships_artifact: ClassVar[bool] = True
    ends_with_lock_check: ClassVar[bool] = True

    #: send only what changed since the live release (``remote.delta``)
    delta: bool = False

    @property
    def reads_manifest(self) -> bool:
        return self.delta

    def operations(self, ctx: StepContext) -> list[Operation]:
        if ctx.image:
            return self.image_operations(ctx)
        if self.delta:
            return self.delta_operations(ctx)
        return [self.whole(ctx, None)]

    def whole(self, ctx: StepContext, manifest: str | None) -> Command:
        """The push of the whole artifact (keeping ``manifest`` as the release's, if any)."""
        return remote_release.push_command(
            ctx.layout,
            ctx.release,
            ctx.revision,
            ctx.env.shared_dirs,
            ctx.env.shared_files,
            artifact=ctx.artifact,
            digest=ctx.artifact_digest,
            need_bytes=ctx.artifact_bytes,
            variables=ctx.env.variables,
            token=ctx.lock_token or None,
            manifest=manifest,
        )

    def delta_operations(self, ctx: StepContext) -> list[Operation]:
        """``push(delta=True)``: what changed since the live release, the whole artifact as its
        fallback; the whole artifact when the target keeps no manifest of its live release."""
        # here, not at the top: the pipeline DSL (``import deploylib``) needs none of it
        from deploylib import release_delta
        from deploylib.digests import file_digest
        from deploylib.remote import delta as remote_delta

        manifest = release_delta.manifest_of_built(ctx.artifact)
        whole = self.whole(ctx, manifest.text if manifest is not None else None)
        if manifest is None or not ctx.previous or not ctx.previous_manifest:
            return [whole]
        linked = release_delta.unchanged(manifest, ctx.previous_manifest)
        if not linked:
            return [whole]
        delta = release_delta.delta_artifact(Path(ctx.artifact), linked)
        return [
            remote_delta.delta_push_command(
                ctx.layout,
                ctx.release,
                ctx.revision,
                ctx.env.shared_dirs,
                ctx.env.shared_files,
                previous=ctx.previous,
                linked=[(path, manifest.entries[path].sha256) for path in linked],
                artifact=str(delta),
                digest=file_digest(delta),
                manifest=manifest.text,
                fallback=whole,
                need_bytes=ctx.artifact_bytes,
                variables=ctx.env.variables,
                token=ctx.lock_token or None,
            )
        ]

    def controller_operations(self, ctx: StepContext) -> list[Operation]:
        """What runs on this machine before any target is contacted: with a container image,
        ``docker push`` to the registry (its output names the digest); nothing otherwise."""
        if not ctx.image:
            return []
        ref = ctx.values["image"]
        return [images.push_command(ref, ctx.registry_login(), ctx.env.command_timeout)]

    def image_operations(self, ctx: StepContext) -> list[Operation]:
        """A container release on a target: ``shared/.env`` as for any release, the image
        pulled (and checked against the pushed digest), the release's env files for the app and
        for ``docker run --env-file``, IMAGE, and REVISION last."""
        layout, token = ctx.layout, ctx.lock_token or None
        ref = ctx.values["image"]
        try:
            # the registry's credentials are the deploy's, not the app's
            variables = {
                k: v for k, v in ctx.env.variables.items() if k not in REGISTRY_CREDENTIALS
            }
            docker_env = images.docker_env_command(layout, ctx.release, variables, token)
        except ValueError as exc:
            raise ConfigError(str(exc), key="push") from None
        return [
            remote_release.prepare_command(layout, token, 0, has_env=bool(ctx.env.variables)),
            images.pull_command(
                layout,
                ref,
                ctx.image_digest,
                token=token,
                login=ctx.registry_login(),
                timeout=ctx.env.command_timeout,
            ),
            docker_env,
            remote_release.unpack_command(
                layout,
                ctx.release,
                ctx.revision,
                ctx.env.shared_dirs,
                ctx.env.shared_files,
                variables=ctx.env.variables,
                token=token,
                image=ref,
                digest=ctx.image_digest,
            ),
        ]


@dataclass(frozen=True)
class Run(Step):
    command: str = ""
    cwd: str | None = None
    timeout: float | None = None
    #: run as another user through ``sudo -n`` (see ``StepContext.command``)
    sudo: bool | str = False

    def operations(self, ctx: StepContext) -> list[Operation]:
        return [
            ctx.command(
                self.command,
                cwd=self.cwd,
                timeout=self.timeout,
                description=self.name,
                sudo=self.sudo,
            )
        ]

    def templates(self) -> Iterable[str]:
        return [self.command, *([self.cwd] if self.cwd else [])]


@dataclass(frozen=True)
class Switch(Step):
    """Move ``current`` to the new release, then run ``restart`` (from the new ``current``)."""

    moves_current: ClassVar[bool] = True

    restart: str | None = None
    start: str | None = None
    stop: str | None = None
    #: the restart runs as another user through ``sudo -n`` (see ``StepContext.command``)
    sudo: bool | str = False

    def operations(self, ctx: StepContext) -> list[Operation]:
        switch = remote_release.switch_command(ctx.layout, ctx.release, ctx.lock_token or None)
        return in_one(switch, self.restart_operations(ctx), ctx.release)

    def restart_operations(self, ctx: StepContext) -> list[Operation]:
        if not self.restart:
            return []
        return [
            ctx.command(
                self.restart,
                cwd=ctx.layout.current,
                description="restart",
                inherit_lock=False,
                sudo=self.sudo,
            )
        ]

    def slot_operations(self, ctx: StepContext) -> list[Operation]:
        """Blue-green: stop whatever runs on the slot in ``ctx`` (``{port}``, ``{slot}``), then
        start ``ctx.release`` there, from its own directory."""
        assert self.start and self.stop
        return [
            self.stop_operation(ctx),
            ctx.command(
                self.start,
                cwd=ctx.release_path,
                description="start",
                inherit_lock=False,
                sudo=self.sudo,
            ),
        ]

    def stop_operation(self, ctx: StepContext) -> Operation:
        """Blue-green: stop whatever runs on the slot in ``ctx``."""
        assert self.stop
        return ctx.command(
            self.stop,
            cwd=ctx.env.deploy_to,
            description="stop",
            inherit_lock=False,
            sudo=self.sudo,
        )

    def templates(self) -> Iterable[str]:
        return [t for t in (self.restart, self.start, self.stop) if t]

    def undo_step(self) -> Step | None:
        """What takes the new release off a target put back to no release (its first deploy
        failed), besides ``current`` going: nothing, unless the switch started it somewhere
        that outlives ``current`` (a swarm service)."""
        return None


@dataclass(frozen=True)
class Verify(Step):
    checks: tuple[Check, ...] = ()
    attempts: int = 10
    wait: float = 1.0
    deadline: float | None = None

    @property
    def retry(self) -> Retry:
        return Retry(self.attempts, self.wait, self.deadline)

    def operations(self, ctx: StepContext) -> list[Operation]:
        return [check.operation(ctx) for check in self.checks]

    def templates(self) -> Iterable[str]:
        for check in self.checks:
            yield from check.templates()


@dataclass(frozen=True)
class Rollback(Step):
    """Switch back to ``ctx.release`` (the rollback target) and restart there.

    In ``Pipeline(on_failure=rollback(restart=...))`` it says how a failed deploy is put back;
    without ``restart`` the switch step's restart is used.
    """

    moves_current: ClassVar[bool] = True

    restart: str | None = None
    sudo: bool | str = False

    def operations(self, ctx: StepContext) -> list[Operation]:
        # putting back the release that was live needs only its directory; a rollback target
        # must be complete
        switch = remote_release.switch_command(
            ctx.layout, ctx.release, ctx.lock_token or None, complete=not ctx.restoring
        )
        restart: list[Operation] = []
        if self.restart:
            restart.append(
                ctx.command(
                    self.restart,
                    cwd=ctx.layout.current,
                    description="restart",
                    inherit_lock=False,
                    sudo=self.sudo,
                )
            )
        return in_one(switch, restart, ctx.release)

    def templates(self) -> Iterable[str]:
        return [self.restart] if self.restart else []


def in_one(switch: Command, restart: list[Operation], release: str | None) -> list[Operation]:
    """The operations of a switch and its restart: one command when the restart is one plain
    command (``remote_release.switch_then``), else each on its own."""
    if len(restart) == 1:
        [then] = restart
        if isinstance(then, Command) and not then.progress and then.stdin_file is None:
            return [remote_release.switch_then(switch, then, release)]
    return [switch, *restart]
