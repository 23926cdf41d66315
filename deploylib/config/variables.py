"""Variables: the env files read, secrets wrapped, and ``${VAR}`` filled in deploy.toml.

This is the only module that reads env files. An error about an env file names the file and
line and says what is wrong, never what the line holds: it may be a secret.
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
from deploylib.errors import ConfigError
from deploylib.secrets import Redactor, Secret
from deploylib.stdin_env import RESERVED_PREFIX

ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always used with fullmatch


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
    what is wrong, never the line's content (an unquoted multi-line key would be echoed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(path)) from None
    for binding in parse_stream(io.StringIO(text)):
        problem = _binding_problem(binding)
        if problem:
            raise ConfigError(
                f"{problem}; a value that spans lines must be quoted",
                file=str(path),
                key=f"line {_first_line(binding)}",
            )
    # every line parses: python-dotenv has nothing to warn about (its warning would go to the
    # log), and interpolates exactly as a python-dotenv reader of this file would (its own
    # ${VAR} expansion, not deploylib.interpolation: the app reading the file uses python-dotenv)
    loaded = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {name: value or "" for name, value in loaded.items()}


def _binding_problem(binding: Binding) -> str | None:
    """What is wrong with one statement of an env file, in words that quote none of it."""
    if binding.error:
        return "cannot be read as NAME=value"
    if binding.key is None:
        return None  # a comment or blank lines
    if not ENV_VAR_RE.fullmatch(binding.key):
        return "not a valid variable name (letters, digits and _, not starting with a digit)"
    if binding.key.startswith(RESERVED_PREFIX):
        return f"a name starting with {RESERVED_PREFIX}, which deploylib's shell uses itself"
    if binding.value is None:
        return "a name without '=' and a value"
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
