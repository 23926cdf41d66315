"""A pipeline's name: the stem of ``pipelines/<name>.py``, as deploy.toml's ``pipeline`` key and
the command line's ``--pipeline`` give it. Never a path: ``../x``, ``/abs/x`` or ``sub/x`` would
import a file from elsewhere (a light module: the DSL's import needs no config models)."""

from __future__ import annotations

import re

from deploylib.errors import ConfigError

#: letters, digits, ``_`` and ``-``, not starting with ``-``: no ``/``, no leading ``.``
PIPELINE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"


def check_name(name: str, key: str = "pipeline") -> None:
    """``name`` names a pipeline, or a ``ConfigError`` naming ``key`` (``--pipeline`` for the
    command line's) says it does not."""
    if not re.fullmatch(PIPELINE_PATTERN, name):
        raise ConfigError(
            f"not a pipeline name: {name!r} (a pipeline is pipelines/NAME.py, NAME of letters, "
            "digits, _ and -, not starting with -; never a path)",
            key=key,
        )
