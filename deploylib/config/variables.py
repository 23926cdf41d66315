"""Variables: the env files read, secrets wrapped, and ``${VAR}`` filled in deploy.toml.

This is the only module that reads env files. An error about an env file names the file and
line and says what is wrong, never what the line holds: it may be a secret.

What no command could be given is refused when the file is read, not when a command runs: a value
holding a NUL byte (no environment variable can), a value longer than ``MAX_VALUE_BYTES`` (Linux
refuses an environment string over 128 KiB), and a name deploylib uses itself
(``RESERVED_NAMES``, names starting with ``RESERVED_PREFIX``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from dotenv.parser import Binding, parse_stream

from deploylib import interpolation
from deploylib.config.schema import EnvironmentModel, ProjectModel
from deploylib.envfile import NEVER_SET
from deploylib.errors import ConfigError
from deploylib.locks import INHERITED_LOCK
from deploylib.secrets import Redactor, Secret
from deploylib.stdin_env import RESERVED_PREFIX

ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always used with fullmatch
#: the longest value an env file may hold, in UTF-8 bytes: Linux refuses an environment string
#: (NAME=value) over 128 KiB (MAX_ARG_STRLEN) when a local command starts; docs/pipelines.md
MAX_VALUE_BYTES = 100_000
#: the variable names deploylib gives a meaning of its own: the guard of the env file it writes
#: (``envfile.NEVER_SET``, never set) and the lock token it gives each command
#: (``locks.INHERITED_LOCK``); an env file may not set them
RESERVED_NAMES = frozenset({NEVER_SET, INHERITED_LOCK})


def load_variables(
    project: ProjectModel,
    env_model: EnvironmentModel,
    env: str,
    project_dir: Path,
    environ: Mapping[str, str],
) -> tuple[dict[str, str | Secret], Redactor]:
    """The variables of ``.env`` and the environment's env file, secrets wrapped, each value
    overridden by the process environment; and a redactor that knows every secret."""
    files: list[tuple[Path, bool]] = [(project_dir / ".env", False)]
    explicit = env_model.env_file or project.env_file
    if explicit:
        files.append((project_path(project_dir, explicit), True))
    else:
        files.append((project_dir / f".env.{env}", False))
    public = set(env_model.public_env or project.public_env or [])
    values: dict[str, str] = {}
    for path, required in files:
        if not path.is_file():
            if required:
                raise ConfigError(
                    "env file not found", file=str(path), key=f"environments.{env}.env_file"
                )
            continue
        values.update(read_env_file(path))
    redactor = Redactor()
    variables: dict[str, str | Secret] = {}
    for name, value in values.items():
        value = environ.get(name, value)
        if name in public:
            variables[name] = value
        else:
            variables[name] = Secret(value)
            redactor.add(value)
    return variables, redactor


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of one env file, with ``${VAR}`` filled as python-dotenv fills them.

    Every line must be a comment, blank, or ``NAME=value`` with a valid name; a value that
    spans lines must be quoted. Anything else is a ``ConfigError`` naming the file and line and
    what is wrong, never the line's content (an unquoted multi-line key would be echoed).

    A value, once interpolated, holds no NUL byte and is at most ``MAX_VALUE_BYTES`` long; a
    name is none of deploylib's own. Those errors name the variable too, never its value."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(path)) from None
    lines: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        problem = _binding_problem(binding)
        if problem:
            raise ConfigError(problem, file=str(path), key=f"line {_first_line(binding)}")
        if binding.key is not None:
            lines[binding.key] = _first_line(binding)  # the last one sets the value
    # every line parses: python-dotenv has nothing to warn about (its warning would go to the
    # log), and interpolates exactly as a python-dotenv reader of this file would (its own
    # ${VAR} expansion, not deploylib.interpolation: the app reading the file uses python-dotenv)
    loaded = dotenv_values(stream=io.StringIO(text), interpolate=True)
    values = {name: value or "" for name, value in loaded.items()}
    for name, value in values.items():
        problem = _value_problem(value)
        if problem:
            raise ConfigError(f"{name}: {problem}", file=str(path), key=f"line {lines[name]}")
    return values


#: said of a line that does not read as NAME=value: the likely cause
_SPANS_LINES = "; a value that spans lines must be quoted"


def _binding_problem(binding: Binding) -> str | None:
    """What is wrong with one statement of an env file, in words that quote none of it (only a
    reserved name, which is deploylib's own, is named)."""
    if binding.error:
        return "cannot be read as NAME=value" + _SPANS_LINES
    if binding.key is None:
        return None  # a comment or blank lines
    if not ENV_VAR_RE.fullmatch(binding.key):
        return (
            "not a valid variable name (letters, digits and _, not starting with a digit)"
            + _SPANS_LINES
        )
    if binding.key.startswith(RESERVED_PREFIX):
        return (
            f"a name starting with {RESERVED_PREFIX}, which deploylib's shell uses itself"
            + _SPANS_LINES
        )
    if binding.key in RESERVED_NAMES:
        return f"{binding.key} is a name deploylib uses itself: an env file may not set it"
    if binding.value is None:
        return "a name without '=' and a value" + _SPANS_LINES
    return None


def _value_problem(value: str) -> str | None:
    """What makes ``value`` one no command can be given, in words that quote none of it."""
    if "\0" in value:
        return "the value holds a NUL byte, which no environment variable can hold"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_VALUE_BYTES:
        return (
            f"the value is {size} bytes long: at most {MAX_VALUE_BYTES} bytes "
            "(a longer one could not be given to a command); put it in a file of its own"
        )
    return None


def _first_line(binding: Binding) -> int:
    """The line a statement starts on (python-dotenv counts from the blank lines before it)."""
    text = binding.original.string
    blank = text[: len(text) - len(text.lstrip())]
    return binding.original.line + blank.count("\n")


def project_path(project_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_dir / path


#: the settings a secret may be interpolated into, by their keys' last parts (top level and in an
#: environment alike): they are never on a command line, and every message that could show them
#: is redacted
SECRET_SETTINGS = frozenset({("notify", "webhook"), ("pushgateway",)})


def interpolate(
    value: Any,
    lookup: Mapping[str, str],
    file: str,
    key: tuple[str, ...],
    secrets: frozenset[str] = frozenset(),
) -> Any:
    """``value`` (a TOML value: table, array or scalar) with ``${VAR}`` filled in its strings.

    ``$$`` is a literal ``$``. A secret's name is refused outside ``SECRET_SETTINGS``; a name
    unset everywhere, without a default, is an error naming ``file`` and the key."""
    if isinstance(value, dict):
        return {k: interpolate(v, lookup, file, (*key, str(k)), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, lookup, file, (*key, str(i)), secrets) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def refuse_secret(name: str) -> None:
        if name in secrets and not any(key[-len(s) :] == s for s in SECRET_SETTINGS):
            raise ConfigError(
                f"${{{name}}} is a secret (a value from the env files): here it would go onto "
                "command lines and into messages; list it in public_env if it is not secret",
                file=file,
                key=".".join(key),
            )

    def unset(name: str) -> str:
        raise ConfigError(
            f"variable ${{{name}}} is not set (not in the environment, .env or the env_file)",
            file=file,
            key=".".join(key),
        )

    return interpolation.expand(value, lookup, unset=unset, check=refuse_secret, dollar_escape=True)
