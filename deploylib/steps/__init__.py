"""The pipeline steps: each turns a ``StepContext`` into operations, and runs nothing itself.

``build`` runs once on this machine; ``push``, ``run``, ``switch``, ``verify`` and ``rollback``
run on every target; ``migrate`` (and ``run(once=True)``) on one target. A custom step is a
function decorated ``@step``. Every step takes ``before=`` and ``after=`` hooks: steps, or
strings that become ``run(...)``.

The package: ``base`` (what a step is), ``builtin`` (the step kinds), ``custom`` (``@step``)
and ``dsl`` (the functions pipelines are written with).
"""

from __future__ import annotations

from deploylib.steps.base import Placement, Retry, Step
from deploylib.steps.builtin import Build, Push, Rollback, Run, Switch, Verify
from deploylib.steps.custom import CustomStep, StepFunction, step
from deploylib.steps.dsl import (
    HookSpec,
    as_steps,
    build,
    migrate,
    push,
    rollback,
    run,
    switch,
    verify,
)

__all__ = [
    "Build",
    "CustomStep",
    "HookSpec",
    "Placement",
    "Push",
    "Retry",
    "Rollback",
    "Run",
    "Step",
    "StepFunction",
    "Switch",
    "Verify",
    "as_steps",
    "build",
    "migrate",
    "push",
    "rollback",
    "run",
    "step",
    "switch",
    "verify",
]
