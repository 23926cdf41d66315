"""The pipeline steps: each turns a ``StepContext`` into operations, and runs nothing itself.

``build`` runs once on this machine; ``push``, ``run``, ``switch``, ``verify`` and ``rollback``
run on every target; ``migrate`` (and ``run(once=True)``) on one target; ``python_env``
gives each release its virtual environment. A custom step is a function decorated ``@step``.
Every step takes ``before=`` and ``after=`` hooks: steps, or strings that become ``run(...)``.

The package: ``base`` (what a step is), ``builtin`` (the step kinds), ``custom`` (``@step``),
``dsl`` (the functions pipelines are written with) and ``python_env`` (a virtual
environment per release).
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
from deploylib.steps.python_env import PythonBundle, PythonEnv, python_env

__all__ = [
    "Build",
    "CustomStep",
    "HookSpec",
    "Placement",
    "Push",
    "PythonBundle",
    "PythonEnv",
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
    "python_env",
    "rollback",
    "run",
    "step",
    "switch",
    "verify",
]
