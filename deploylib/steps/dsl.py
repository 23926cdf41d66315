"""The functions a pipeline is written with: ``build``, ``push``, ``run``, ``migrate``,
``switch``, ``verify``, ``rollback``; each checks its arguments and returns a step. Hooks
(``before=``, ``after=``) are steps or strings that become ``run(...)``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from deploylib.checks import Check, seconds
from deploylib.errors import ConfigError
from deploylib.remote.images import ARG_NAME_RE
from deploylib.steps.base import Step
from deploylib.steps.builtin import Build, Push, Rollback, Run, Switch, Verify
from deploylib.steps.migrations import Migrate
from deploylib.sudo import USER_NAME

HookSpec = Step | str | Sequence[Step | str] | None


def as_steps(spec: Step | str | Sequence[Step | str] | None) -> tuple[Step, ...]:
    if spec is None:
        return ()
    if isinstance(spec, Step | str):
        spec = [spec]
    steps: list[Step] = []
    for item in spec:
        if isinstance(item, str):
            steps.append(run(item))
        elif isinstance(item, Step):
            steps.append(item)
        else:
            raise ConfigError(f"a hook must be a step or a command string, not {item!r}")
    return tuple(steps)


def build(
    command: str | None = None,
    *,
    git: str | None = None,
    cwd: str | None = None,
    image: str | None = None,
    context: str = ".",
    dockerfile: str | None = None,
    target: str | None = None,
    build_args: Mapping[str, str | None] | None = None,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Write the artifact once, on this machine: ``build("tar -czf {artifact} ...")`` runs a
    command, which must write it to ``{artifact}``; ``build(git="app")`` archives the directory
    ``app`` (``"."``: the project dir) as the deploy's commit has it, with ``git archive``;
    ``build(image="{app}:{release}", context="app")`` runs ``docker build`` of ``context``
    (with ``dockerfile``, ``target`` and ``build_args``; a value None is taken from the
    environment), the image named in the environment's ``registry`` (``{image}``)."""
    if image is not None:
        if command is not None or git is not None or cwd is not None:
            raise ConfigError("build(image=...) builds with docker: no command, git= or cwd=")
        return _image_build(image, context, dockerfile, target, build_args or {}, before, after)
    if (command is None) == (git is None):
        raise ConfigError(
            'build(): give a command, build("tar -czf {artifact} ..."), or a directory to '
            'archive from git, build(git="app"); not both'
        )
    if git is not None:
        if cwd is not None:
            raise ConfigError(f"build(git={git!r}): cwd= is for a command build")
        git = _git_path(git)
    return Build(
        name="build",
        placement="local",
        command=command or "",
        cwd=cwd,
        git=git,
        before=as_steps(before),
        after=as_steps(after),
    )


def _image_build(
    image: object,
    context: object,
    dockerfile: object,
    target: object,
    build_args: Mapping[str, str | None],
    before: HookSpec,
    after: HookSpec,
) -> Step:
    """``build(image=...)``, each argument checked: they become argv words of ``docker
    build``, and none may be taken for an option."""
    if not isinstance(image, str) or not image or image.startswith("-") or _control(image):
        raise ConfigError(
            f'build(image={image!r}): an image name and tag, e.g. "{{app}}:{{release}}"'
        )
    if ":" not in image.rsplit("/", 1)[-1]:
        raise ConfigError(
            f"build(image={image!r}): name a tag (name:tag), e.g. {{app}}:{{release}}"
        )
    context = _git_path(context, "context")
    if dockerfile is not None:
        dockerfile = _git_path(dockerfile, "dockerfile")
    if target is not None and not (
        isinstance(target, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", target)
    ):
        raise ConfigError(f"build(target={target!r}): the name of a stage of the Dockerfile")
    args: list[tuple[str, str | None]] = []
    for name, value in dict(build_args).items():
        if not isinstance(name, str) or not ARG_NAME_RE.fullmatch(name):
            raise ConfigError(f"build(build_args=...): {name!r} is not a build argument's name")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise ConfigError(f"build(build_args=...): {name}'s value must be text or None")
        args.append((name, value))
    return Build(
        name="build",
        placement="local",
        image=image,
        context=context,
        dockerfile=dockerfile,
        target=target,
        build_args=tuple(args),
        before=as_steps(before),
        after=as_steps(after),
    )


def _control(text: str) -> bool:
    return any(ord(c) < 32 or c == "\x7f" for c in text)


def _git_path(path: object, what: str = "git") -> str:
    """``build(git=...)``'s directory: relative to the project dir, inside it, normalised."""
    text = path if isinstance(path, str) else ""
    parts = PurePosixPath(text).parts
    if not text or text.startswith(("/", "-")) or ".." in parts or _control(text):
        raise ConfigError(
            f"build({what}={path!r}): a path relative to the project dir, inside it "
            '(no "..", not absolute, not starting with "-"; "." for the whole project dir)'
        )
    return str(PurePosixPath(text))


def push(*, delta: bool = False, before: HookSpec = None, after: HookSpec = None) -> Step:
    """Upload the artifact, unpack it into ``{release_path}``, link shared paths, write REVISION.

    ``delta=True`` sends only what changed since the live release: files the same there (by
    sha256, mode and owner) are hard-linked from it and checked, anything else is sent; when
    they are not all as they were, the whole artifact is sent instead (docs/pipelines.md,
    "Delta releases")."""
    if not isinstance(delta, bool):
        raise ConfigError(f"push(delta=...) is True or False, not {delta!r}", key="push")
    return Push(name="push", delta=delta, before=as_steps(before), after=as_steps(after))


def run(
    command: str,
    *,
    cwd: str | None = None,
    once: bool = False,
    roles: Sequence[str] = (),
    timeout: float | None = None,
    name: str = "run",
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Run ``command`` on every target (or one, with ``once=True``; or those with ``roles``).

    ``sudo=True`` runs it as the environment's ``become`` user (root when it has none),
    ``sudo="name"`` as that user: through ``sudo -n``, which fails at once, saying which
    sudoers rule is missing, rather than asking for a password."""
    _check_timeout("run", timeout)
    _check_sudo("run", sudo)
    return Run(
        name=name,
        placement="once" if once else "each",
        roles=tuple(roles),
        command=command,
        cwd=cwd,
        timeout=timeout,
        sudo=sudo,
        before=as_steps(before),
        after=as_steps(after),
    )


def migrate(
    command: str,
    *,
    cwd: str | None = "{release_path}",
    timeout: float | None = None,
    schema: str | None = None,
    undo: str | None = None,
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Run ``command`` once per deploy: on the first target with role ``db``, else the first.

    ``schema``: record the migration state with the release (``"django"``, ``"alembic"`` or
    a command printing one migration a line), so ``rollback`` to a release that does not know
    every live migration names them and asks for ``--yes``; ``undo`` (``"django"``,
    ``"alembic"`` or a command) reverses them first instead."""
    _check_timeout("migrate", timeout)
    if undo is not None and not schema:
        raise ConfigError("migrate(undo=...) needs schema=: the state says what to undo")
    for kind in ("django", "alembic"):
        if undo == kind and schema != kind:
            raise ConfigError(f'migrate(undo="{kind}") needs schema="{kind}"')
    _check_sudo("migrate", sudo)
    return Migrate(
        schema=schema,
        undo=undo,
        name="migrate",
        placement="once",
        roles=("db",),
        command=command,
        cwd=cwd,
        timeout=timeout,
        sudo=sudo,
        before=as_steps(before),
        after=as_steps(after),
    )


def switch(
    *,
    restart: str | None = None,
    start: str | None = None,
    stop: str | None = None,
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Point ``current`` at the new release atomically, then ``restart`` the app (as another
    user with ``sudo``, as in ``run``; a put-back restarts the same way)."""
    _check_sudo("switch", sudo)
    return Switch(
        name="switch",
        restart=restart,
        start=start,
        stop=stop,
        sudo=sudo,
        before=as_steps(before),
        after=as_steps(after),
    )


def verify(
    *checks: Check,
    attempts: int = 10,
    wait: float = 1.0,
    deadline: float | None = None,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Retry ``checks`` until all pass: ``attempts`` times, ``wait`` s apart, by ``deadline``."""
    if not checks:
        raise ConfigError(
            "verify() needs at least one check: http(...), tcp(...), command(...) or "
            "prometheus(...)"
        )
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= 10_000
        or isinstance(wait, bool)
        or not isinstance(wait, int | float)
        or not 0 <= wait <= LONGEST_SECONDS
    ):
        raise ConfigError(
            "verify(): attempts must be >= 1 (at most 10000), wait >= 0 and deadline > 0 "
            f"(seconds, at most {LONGEST_SECONDS})"
        )
    _check_timeout("verify", deadline, "deadline")
    return Verify(
        name="verify",
        checks=tuple(checks),
        attempts=attempts,
        wait=wait,
        deadline=deadline,
        before=as_steps(before),
        after=as_steps(after),
    )


def rollback(
    *,
    restart: str | None = None,
    sudo: bool | str = False,
    before: HookSpec = None,
    after: HookSpec = None,
) -> Step:
    """Switch back to the previous release (see ``Rollback``)."""
    _check_sudo("rollback", sudo)
    return Rollback(
        name="rollback",
        restart=restart,
        sudo=sudo,
        before=as_steps(before),
        after=as_steps(after),
    )


#: the longest any timeout, wait or deadline of a step may be: a day, as deploy.toml's
LONGEST_SECONDS = 86400


def _check_timeout(what: str, timeout: float | None, name: str = "timeout") -> None:
    if timeout is not None:
        seconds(f"{what}()", name, timeout, LONGEST_SECONDS)


def _check_sudo(what: str, sudo: bool | str) -> None:
    if isinstance(sudo, bool):
        return
    if not isinstance(sudo, str) or not USER_NAME.fullmatch(sudo):
        raise ConfigError(f"{what}(sudo={sudo!r}): sudo is True, False or a user name")
