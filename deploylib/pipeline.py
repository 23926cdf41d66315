"""``Pipeline``: an ordered list of steps, validated whole, and how pipelines are found.

A pipeline lives in ``pipelines/<name>.py`` as a module-level ``pipeline = Pipeline(...)``.
The runner reads it in phases, by position: ``local`` steps (``build``) first, then everything
before ``switch`` (prepare: nothing user-visible changes), ``switch``, then everything after it
(``verify`` and friends); a failure after the switch puts every switched target back.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from deploylib import placeholders
from deploylib.errors import ConfigError
from deploylib.pipeline_name import check_name
from deploylib.steps import Build, Push, Rollback, Step, Switch, as_steps
from deploylib.steps.service import ServiceSwitch

if TYPE_CHECKING:
    from deploylib.config import Environment
    from deploylib.hosts import Host


@dataclass(frozen=True)
class Phases:
    local: tuple[Step, ...]
    prepare: tuple[Step, ...]
    switch: Switch | None
    post: tuple[Step, ...]


class Pipeline:
    """``Pipeline(build(...), push(), switch(...), verify(...), on_failure=...)``.

    ``on_failure`` steps run on every target after a failed deploy was put back. A ``rollback``
    step among them replaces the default way of putting a target back.
    """

    def __init__(
        self,
        *steps: Step | str,
        on_failure: Step | str | Sequence[Step | str] | None = None,
        name: str = "",
    ) -> None:
        self.steps: tuple[Step, ...] = as_steps(list(steps))
        failure_steps = as_steps(on_failure)
        self.revert: Rollback | None = next(
            (s for s in failure_steps if isinstance(s, Rollback)), None
        )
        self.on_failure: tuple[Step, ...] = tuple(
            s for s in failure_steps if not isinstance(s, Rollback)
        )
        self.name = name

    def flat(self) -> list[Step]:
        """Every step in run order, hooks expanded."""
        return _expand(self.steps)

    def phases(self) -> Phases:
        flat = self.flat()
        switch_index = next((i for i, s in enumerate(flat) if isinstance(s, Switch)), None)
        before = flat if switch_index is None else flat[:switch_index]
        after = [] if switch_index is None else flat[switch_index + 1 :]
        switch = None if switch_index is None else flat[switch_index]
        assert switch is None or isinstance(switch, Switch)
        return Phases(
            local=tuple(s for s in before if s.placement == "local"),
            prepare=tuple(s for s in before if s.placement != "local"),
            switch=switch,
            post=tuple(after),
        )

    @property
    def image(self) -> str:
        """The ``build(image=...)`` template: the release's artifact is a container image
        ("": a tarball)."""
        return next((s.image for s in self.flat() if isinstance(s, Build) and s.image), "")

    def revert_step(self) -> Rollback:
        """How a target goes back: the ``rollback`` step from ``on_failure``, with the switch
        step's restart unless it names its own."""
        switch = self.phases().switch
        revert = self.revert or Rollback(name="rollback")
        if revert.restart is None and isinstance(switch, ServiceSwitch):
            return switch.revert()  # the service goes back with ``current``
        if revert.restart is None and switch is not None and switch.restart:
            revert = replace(revert, restart=switch.restart, sudo=switch.sudo)
        return revert

    def validate(self, file: str = "") -> None:
        """Structure and placeholders; raises ``ConfigError`` naming the pipeline file."""
        flat = self.flat()
        if not flat:
            raise ConfigError("the pipeline has no steps", file=file, key="pipeline")
        switches = [s for s in flat if isinstance(s, Switch)]
        if len(switches) > 1:
            raise ConfigError("a pipeline has at most one switch()", file=file, key="switch")
        pushes = [i for i, s in enumerate(flat) if isinstance(s, Push)]
        builds = [i for i, s in enumerate(flat) if isinstance(s, Build)]
        if pushes and (not builds or builds[0] > pushes[0]):
            raise ConfigError("push() needs a build() before it", file=file, key="push")
        if switches and not pushes:
            raise ConfigError("switch() needs a push() before it", file=file, key="switch")
        if pushes and not switches:
            raise ConfigError("push() without switch() would never go live", file=file, key="push")
        for index, each in enumerate(flat):
            if each.needs_release and (not pushes or index < pushes[0]):
                raise ConfigError(
                    f"{each.name}() works in the new release: put it after push()",
                    file=file,
                    key=each.name,
                )
        if switches and flat.index(switches[0]) < pushes[0]:
            raise ConfigError("switch() must come after push()", file=file, key="switch")
        for s in switches:
            if (s.start or s.stop) and not (s.start and s.stop):
                raise ConfigError(
                    "switch(start=..., stop=...) needs both: what starts a release on a slot "
                    "and what stops whatever runs there",
                    file=file,
                    key="switch",
                )
            if s.start and s.restart and not isinstance(s, ServiceSwitch):
                raise ConfigError(
                    "switch() either restarts in place (restart=) or starts the release on an "
                    "idle slot (start=, stop=), not both",
                    file=file,
                    key="switch",
                )
        if switches and builds and builds[-1] > flat.index(switches[0]):
            raise ConfigError("build() must come before switch()", file=file, key="build")
        for each in [*flat, *_expand(self.on_failure), *([self.revert] if self.revert else [])]:
            for template in each.templates():
                try:
                    placeholders.validate(template, each.name)
                except ConfigError as exc:
                    raise ConfigError(exc.message, file=file, key=f"step {each.name}") from None


def rehearse(
    pipeline: Pipeline,
    env: Environment,
    hosts: Sequence[Host],
    *,
    release: str,
    revision: str,
    artifact: str,
) -> None:
    """Fill every template of every step for every host, as the deploy will, before any host is
    contacted: a placeholder without a value here (a typo, or ``{port}`` where no strategy gives
    one) is a ``ConfigError`` naming the pipeline file and step, not a failure half-way through.

    ``@step`` functions are called too, with the same context a deploy gives them (they must only
    describe commands). An error raised by a function's own code is left for the deploy itself,
    which handles it like any failure; a bad placeholder in what it returns is found here."""
    from deploylib.context import StepContext
    from deploylib.hosts import LOCAL
    from deploylib.steps import CustomStep

    file = str(env.pipeline_file(pipeline.name or None))
    fits(pipeline, env)
    blue_green = env.strategy.kind == "blue_green"
    slot = (
        {"port": str(env.strategy.ports[0]), "slot": "blue"}
        if blue_green and env.strategy.ports
        else None
    )
    every = [
        *pipeline.flat(),
        *_expand(pipeline.on_failure),
        *([pipeline.revert] if pipeline.revert else []),
    ]
    for index, host in enumerate([LOCAL, *hosts]):
        ctx = StepContext(
            env=env,
            host=host,
            release=release,
            revision=revision,
            artifact=artifact,
            artifact_bytes=1,
            lock_token="0" * 16,
            extra=slot,
            image=pipeline.image,
        )
        for each in every:
            if (each.placement == "local") != (index == 0):  # local steps: this machine
                continue
            try:
                each.operations(ctx)
            except ConfigError as exc:
                raise ConfigError(exc.message, file=file, key=f"step {each.name}") from None
            except Exception as exc:
                if isinstance(each, CustomStep):
                    continue
                raise ConfigError(
                    f"{exc.__class__.__name__}: {exc}", file=file, key=f"step {each.name}"
                ) from None


def fits(pipeline: Pipeline, env: Environment) -> None:
    """The pipeline's switch is the strategy's: a slot switch (``start=``, ``stop=``) for
    blue_green, an in-place one otherwise; ``{port}`` and ``{slot}`` only where there are slots."""
    file = str(env.pipeline_file(pipeline.name or None))
    switch = pipeline.phases().switch
    blue_green = env.strategy.kind == "blue_green"
    swarm = env.orchestrator == "swarm"
    if swarm and not isinstance(switch, ServiceSwitch):
        raise ConfigError(
            f'{env.name!r} has orchestrator = "swarm": the pipeline\'s switch is '
            "deploylib.recipes.service(...), which runs the release as a swarm service",
            file=file,
            key="switch",
        )
    if isinstance(switch, ServiceSwitch) and not swarm:
        raise ConfigError(
            f'service() runs a swarm service: {env.name!r} needs orchestrator = "swarm" '
            "(and [swarm]) in deploy.toml",
            file=file,
            key="switch",
        )
    steering = sorted(name for name in env.variables if steers_docker(name)) if swarm else []
    if steering:
        raise ConfigError(
            f"{steering[0]} is a variable of the release, and the docker command that gives "
            "the service its variables would read it as its own setting (which daemon, which "
            "config, which PATH): rename it in the env files",
            file=file,
            key=steering[0],
        )
    if swarm and not pipeline.image:
        raise ConfigError(
            "service() runs the release's image: the pipeline needs build(image=...) and push()",
            file=file,
            key="switch",
        )
    if switch is not None and blue_green and not switch.start:
        raise ConfigError(
            "the blue_green strategy starts each release on an idle slot: the pipeline needs "
            "switch(start=..., stop=...) with {port} (and maybe {slot})",
            file=file,
            key="switch",
        )
    if switch is not None and switch.start and not blue_green and not swarm:
        raise ConfigError(
            "switch(start=..., stop=...) needs the blue_green strategy (strategy.kind = "
            f'"blue_green" with its ports); {env.name!r} uses {env.strategy.kind!r}: '
            "use switch(restart=...)",
            file=file,
            key="switch",
        )
    image_steps(pipeline, env, file)
    if blue_green:
        return
    every = [*pipeline.flat(), *_expand(pipeline.on_failure)]
    for each in [*every, *([pipeline.revert] if pipeline.revert else [])]:
        for template in each.templates():
            used = placeholders.names_in(template) & {"port", "slot"}
            if used:
                name = sorted(used)[0]
                raise ConfigError(
                    f"{{{name}}} is a blue-green slot's, and {env.name!r} uses the "
                    f"{env.strategy.kind!r} strategy, which has no slots",
                    file=file,
                    key=f"step {each.name}",
                )


#: variables the docker CLI reads as its own settings, besides every ``DOCKER_*``
_DOCKER_SETTINGS = frozenset(
    {"HOME", "PATH", "XDG_RUNTIME_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
)


def steers_docker(name: str) -> bool:
    """Whether a variable named ``name`` in the docker CLI's environment changes what it does."""
    upper = name.upper()
    return upper.startswith("DOCKER_") or upper in _DOCKER_SETTINGS


def image_steps(pipeline: Pipeline, env: Environment, file: str) -> None:
    """``{image}`` only with ``build(image=...)``, and an image only with a registry to push it
    to (``registry``, or one named in the image itself): never Docker Hub by accident."""
    from deploylib.remote.images import registry_of

    if pipeline.image:
        if not env.registry and registry_of(pipeline.image) is None:
            raise ConfigError(
                f"build(image={pipeline.image!r}) needs a registry the hosts pull from: "
                'registry = "host:port" in deploy.toml (top level or per environment)',
                file=file,
                key="build",
            )
        return
    every = [*pipeline.flat(), *_expand(pipeline.on_failure)]
    for each in [*every, *([pipeline.revert] if pipeline.revert else [])]:
        if any("image" in placeholders.names_in(t) for t in each.templates()):
            raise ConfigError(
                "{image} is the release's container image: the pipeline needs "
                'build(image="{app}:{release}", ...) (docs/containers.md)',
                file=file,
                key=f"step {each.name}",
            )


def _expand(steps: Sequence[Step]) -> list[Step]:
    flat: list[Step] = []
    for s in steps:
        flat += _expand(s.before)
        flat.append(s)
        flat += _expand(s.after)
    return flat


def load_pipeline(project_dir: Path, name: str) -> tuple[Pipeline, Path]:
    """Import ``pipelines/<name>.py`` and return its ``pipeline``, validated; ``name`` must be a
    pipeline's name (``check_name``), never a path."""
    check_name(name)
    path = project_dir / "pipelines" / f"{name}.py"
    if not path.is_file():
        available = sorted(p.stem for p in (project_dir / "pipelines").glob("*.py"))
        raise ConfigError(
            f"pipeline {name!r} not found (available: {', '.join(available) or 'none'})",
            file=str(path),
            key="pipeline",
        )
    module_name = f"deploylib_pipeline_{name}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError("cannot be imported", file=str(path), key="pipeline")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=str(path), key=exc.key or "pipeline") from None
    except SystemExit as exc:
        line = _line_in(path, exc)
        raise ConfigError(
            f"exited while loading{line} (sys.exit({exc.code!r})): a pipeline file only defines "
            "`pipeline = Pipeline(...)`",
            file=str(path),
            key="pipeline",
        ) from None
    except Exception as exc:
        line = _line_in(path, exc)
        raise ConfigError(
            f"error while loading{line}: {exc.__class__.__name__}: {exc}",
            file=str(path),
            key="pipeline",
        ) from None
    finally:
        sys.modules.pop(module_name, None)
    pipeline = getattr(module, "pipeline", None)
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(
            "defines no `pipeline = Pipeline(...)` at module level", file=str(path), key="pipeline"
        )
    pipeline.name = pipeline.name or name
    pipeline.validate(str(path))
    return pipeline, path


def _line_in(path: Path, exc: BaseException) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == str(path):
            return f" (line {frame.lineno})"
    return ""
