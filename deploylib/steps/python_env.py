"""``python_env()``: a virtual environment for each release, on every target.

Two steps: ``PythonBundle`` runs once on this machine after the build and makes the bundle
of the release's dependency set (its requirements and, by default, the wheels of every
package, built here once: targets need no package index); ``PythonEnv`` runs on each target,
sends the bundle only where no environment of that set exists yet, makes the environment
(uv when the target has it, else ``python -m venv`` and pip) and links it into the release
as ``.venv``. A release whose dependency set is unchanged reuses the environment of the one
before it: a test and a link."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from deploylib.commands import Command, Operation, Upload
from deploylib.context import StepContext
from deploylib.errors import ConfigError, StepFailed
from deploylib.remote import python_env as remote_env
from deploylib.steps.base import Step

INSTALLERS = ("auto", "uv", "pip")


@dataclass(frozen=True)
class PythonSettings:
    requirements: str | None = None
    extras: tuple[str, ...] = ()
    install: remote_env.Install = field(default_factory=remote_env.Install)

    def key(self, ctx: StepContext, step: str) -> str:
        """The dependency set's key; ``UNBUILT`` before the build made the artifact."""
        # read lazily: a pipeline file that only imports the DSL pays nothing for it
        from deploylib.python_deps import UNBUILT, DependencyError, read_dependency_set

        if not Path(ctx.artifact).is_file():
            return UNBUILT
        install = self.install
        settings = [
            install.python,
            "wheels" if install.wheels else "index",
            install.index_url or "",
            *install.extra_index_urls,
        ]
        try:
            deps = read_dependency_set(ctx.artifact, self.requirements, self.extras)
        except DependencyError as exc:
            raise StepFailed(step, ctx.host.name, str(exc)) from None
        return deps.key(settings)


def cache_dir() -> Path:
    """Where this machine keeps the bundles it made, by key."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deploylib" / "python"


def bundle_path(key: str) -> Path:
    return cache_dir() / f"{key}.tar"


@dataclass(frozen=True)
class PythonBundle(Step):
    """On this machine: the bundle of the dependency set, unless the cache has it."""

    settings: PythonSettings = field(default_factory=PythonSettings)

    def operations(self, ctx: StepContext) -> list[Operation]:
        key = self.settings.key(ctx, self.name)
        install = self.settings.install
        argv = [sys.executable, "-m", "deploylib.wheelhouse", "--artifact", ctx.artifact]
        argv += ["--out", str(bundle_path(key))]
        if self.settings.requirements:
            argv += ["--requirements", self.settings.requirements]
        for extra in self.settings.extras:
            argv += ["--extra", extra]
        if install.wheels:
            argv += ["--wheels", "--python", _local_python(install.python)]
        if install.index_url:
            argv += ["--index-url", install.index_url]
        for url in install.extra_index_urls:
            argv += ["--extra-index-url", url]
        return [Command(shlex.join(argv), description="python bundle", timeout=None)]


@dataclass(frozen=True)
class PythonEnv(Step):
    """On each target: the release's environment, made or reused, linked as ``.venv``."""

    needs_release: ClassVar[bool] = True

    settings: PythonSettings = field(default_factory=PythonSettings)
    timeout: float | None = None

    def operations(self, ctx: StepContext) -> list[Operation]:
        key = self.settings.key(ctx, self.name)
        paths = remote_env.EnvPaths(ctx.layout, key)
        upload = Upload(
            bundle_path(key),
            paths.bundle,
            0o600,
            description="upload python bundle",
            unless=remote_env.usable_test(paths),
        )
        ensure = remote_env.ensure_command(
            ctx.layout, key, ctx.release, self.settings.install, ctx.lock_token or None
        )
        timeout = self.timeout or ctx.env.command_timeout
        return [upload, replace(ensure, timeout=timeout)]

    def templates(self) -> Iterable[str]:
        return ()


def _local_python(python: str) -> str:
    """The interpreter that builds wheels here: the targets' one when this machine has it,
    else the one running deploylib."""
    if os.sep in python:
        return python if Path(python).exists() else sys.executable
    return shutil.which(python) or sys.executable


def python_env(
    requirements: str | None = None,
    *,
    python: str = "python3",
    extras: Sequence[str] = (),
    wheels: bool = True,
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    installer: str = "auto",
    uv: str | None = None,
    timeout: float | None = None,
) -> Step:
    """A virtual environment for each release on every target, linked as
    ``{release_path}/.venv``; put it after ``push()``.

    ``requirements``: the file in the release that declares the dependencies
    (``requirements.txt``, ``pylock.toml``, ``uv.lock`` or ``pyproject.toml``; default: the
    first of those found). ``python``: the interpreter on the targets. ``wheels=True`` builds
    every wheel here, once, and ships them (targets need no index); ``wheels=False`` installs
    on each target from the index (``index_url``). ``installer``: "auto" (uv where the target
    has it, else pip), "uv" or "pip"; ``uv``: its path on the targets when it is neither on
    their PATH nor in ``~/.local/bin`` or ``~/.cargo/bin``."""
    if installer not in INSTALLERS:
        raise ConfigError(f"python_env(installer={installer!r}): one of {', '.join(INSTALLERS)}")
    if not python or any(c.isspace() for c in python):
        raise ConfigError(f"python_env(python={python!r}): an interpreter name or path")
    if requirements is not None and (
        not requirements.strip()
        or requirements.startswith("/")
        or ".." in requirements.split("/")
        or any(ord(c) < 32 for c in requirements)
    ):
        raise ConfigError(
            f"python_env(requirements={requirements!r}): a path inside the release, "
            "e.g. requirements.txt or requirements/prod.txt"
        )
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"python_env(timeout={timeout!r}): a number of seconds > 0")
    settings = PythonSettings(
        requirements=requirements,
        extras=tuple(extras),
        install=remote_env.Install(
            python=python,
            installer=installer,
            wheels=wheels,
            index_url=index_url,
            extra_index_urls=tuple(extra_index_urls),
            uv=uv,
        ),
    )
    bundle = PythonBundle(name="py deps", placement="local", settings=settings)
    return PythonEnv(name="python_env", settings=settings, timeout=timeout, before=(bundle,))
