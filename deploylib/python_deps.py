"""A release's Python dependency set, read from the artifact the build made: which file declares
it, the exact bytes that decide it, and its key.

The key names a virtual environment on every target (``.deploylib/python/<key>/venv``): two
releases whose dependency files are byte for byte the same, installed with the same settings,
share one environment instead of installing it again. The key covers the declaring file and
every requirements file it includes (``-r``/``-c``), so a change in any of them is a new key.

Supported sources, by file name: ``requirements*.txt`` (pip's format), ``pylock.toml``
(PEP 751: every package pinned), ``uv.lock`` (exported through ``uv export`` on this machine)
and ``pyproject.toml`` (its ``[project] dependencies``, plus the optional groups named in
``extras``). Nothing here contacts a target; ``requirements_text`` may run ``uv``."""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: found in this order when ``python_env()`` names no file
AUTO_SOURCES = ("uv.lock", "pylock.toml", "requirements.txt", "pyproject.toml")
#: the key used where no artifact exists yet (checks and dry runs)
UNBUILT = "unbuilt"
_INCLUDE = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)(?:\s+|=)(\S+)")
_EDITABLE = re.compile(r"^\s*(?:-e|--editable)(?:\s|=|$)")


class DependencyError(Exception):
    """The dependency file is missing, unreadable or says something deploylib cannot ship."""


@dataclass(frozen=True)
class DependencySet:
    #: the declaring file, relative to the release's root
    source: str
    #: every file that decides the set (relative path -> bytes), the source first
    files: tuple[tuple[str, bytes], ...]
    extras: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        name = posixpath.basename(self.source)
        if name == "uv.lock":
            return "uv.lock"
        if name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml")):
            return "pylock"
        if name == "pyproject.toml":
            return "pyproject"
        return "requirements"

    def key(self, settings: Sequence[str] = ()) -> str:
        """24 hex digits of sha256 over the files and ``settings`` (interpreter, index, ...)."""
        digest = hashlib.sha256()
        for part in [self.kind, *self.extras, "\0", *settings]:
            digest.update(part.encode() + b"\0")
        for name, data in self.files:
            digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
        return digest.hexdigest()[:24]


def read_dependency_set(
    artifact: str | Path, source: str | None, extras: Sequence[str] = ()
) -> DependencySet:
    """The dependency set of the release in ``artifact`` (a .tar.gz); ``source`` None: the
    first of ``AUTO_SOURCES`` found at its root. Read once per artifact version."""
    path = Path(artifact)
    try:
        stat = path.stat()
    except OSError as exc:
        raise DependencyError(f"cannot read the artifact {path}: {exc.strerror}") from None
    return _read(str(path), stat.st_mtime_ns, stat.st_size, source, tuple(extras))


@functools.lru_cache(maxsize=16)
def _read(
    artifact: str, _mtime: int, _size: int, source: str | None, extras: tuple[str, ...]
) -> DependencySet:
    members = _small_members(artifact)
    if source is None:
        found = next((name for name in AUTO_SOURCES if name in members), None)
        if found is None:
            raise DependencyError(
                "found none of " + ", ".join(AUTO_SOURCES) + " at the root of the artifact: "
                "name the file with python_env(requirements=...)"
            )
        source = found
    source = _normal(source)
    if source not in members:
        raise DependencyError(f"{source} is not in the artifact (looked at its root)")
    files: list[tuple[str, bytes]] = [(source, members[source])]
    kind = DependencySet(source, ()).kind
    if kind == "requirements":
        _includes(source, members, files)
    elif kind == "uv.lock":
        pyproject = posixpath.join(posixpath.dirname(source), "pyproject.toml")
        if pyproject in members:
            files.append((pyproject, members[pyproject]))
    return DependencySet(source, tuple(files), extras)


def _normal(name: str) -> str:
    normal = posixpath.normpath(name.strip().removeprefix("./"))
    if normal.startswith(("../", "/")) or normal in ("..", "."):
        raise DependencyError(f"{name!r} is not a path inside the release")
    return normal


def _small_members(artifact: str) -> dict[str, bytes]:
    """The artifact's regular files that could declare dependencies, by normalized name."""
    wanted: dict[str, bytes] = {}
    try:
        with tarfile.open(artifact, "r:*") as tar:
            for member in tar:
                if not member.isfile() or member.size > 8 * 1024 * 1024:
                    continue
                name = posixpath.normpath(member.name.removeprefix("./"))
                base = posixpath.basename(name)
                if base.endswith((".txt", ".toml", ".lock", ".in")):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        wanted[name] = extracted.read()
    except (OSError, tarfile.TarError) as exc:
        raise DependencyError(f"cannot read the artifact {artifact}: {exc}") from None
    return wanted


def _includes(source: str, members: dict[str, bytes], files: list[tuple[str, bytes]]) -> None:
    """Requirements files included by ``source`` (``-r``, ``-c``), depth first, each once."""
    seen = {name for name, _ in files}
    for line in members[source].decode("utf-8", "replace").splitlines():
        if _EDITABLE.match(line):
            raise DependencyError(
                f"{source}: editable requirements ({line.strip()!r}) cannot be shipped; "
                "install the app from its release directory instead"
            )
        match = _INCLUDE.match(line)
        if not match:
            continue
        included = _normal(posixpath.join(posixpath.dirname(source), match.group(1)))
        if included in seen:
            continue
        if included not in members:
            raise DependencyError(f"{source} includes {match.group(1)}, not in the artifact")
        seen.add(included)
        files.append((included, members[included]))
        _includes(included, members, files)


def requirements_text(deps: DependencySet) -> tuple[str, dict[str, bytes]]:
    """What pip installs: the text of a requirements file, and the files it includes (by
    name, to be written beside it). Runs ``uv export`` for a ``uv.lock``."""
    kind = deps.kind
    if kind == "requirements":
        return deps.files[0][1].decode("utf-8"), dict(deps.files[1:])
    data = deps.files[0][1]
    if kind == "pylock":
        return _from_pylock(deps.source, data), {}
    if kind == "pyproject":
        return _from_pyproject(deps.source, data, deps.extras), {}
    return _from_uv_lock(deps), {}


def _toml(source: str, data: bytes) -> dict[str, object]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DependencyError(f"{source}: not valid TOML: {exc}") from None


def _from_pylock(source: str, data: bytes) -> str:
    lines = []
    packages = _toml(source, data).get("packages", [])
    if not isinstance(packages, list):
        raise DependencyError(f"{source}: [[packages]] is not a list")
    for package in packages:
        if not isinstance(package, dict) or not isinstance(package.get("name"), str):
            raise DependencyError(f"{source}: a package without a name")
        version = package.get("version")
        if not isinstance(version, str):
            raise DependencyError(
                f"{source}: package {package['name']} has no version (only pinned packages "
                "can be shipped)"
            )
        marker = package.get("marker")
        line = f"{package['name']}=={version}"
        lines.append(f"{line} ; {marker}" if isinstance(marker, str) and marker else line)
    return "".join(line + "\n" for line in lines)


def _from_pyproject(source: str, data: bytes, extras: Sequence[str]) -> str:
    project = _toml(source, data).get("project")
    if not isinstance(project, dict):
        raise DependencyError(f"{source}: no [project] table")
    found = list(project.get("dependencies") or [])
    optional = project.get("optional-dependencies") or {}
    for extra in extras:
        if not isinstance(optional, dict) or extra not in optional:
            raise DependencyError(f"{source}: no optional-dependencies group {extra!r}")
        found += list(optional[extra])
    if not all(isinstance(item, str) for item in found):
        raise DependencyError(f"{source}: dependencies must be strings")
    return "".join(f"{item}\n" for item in found)


def _from_uv_lock(deps: DependencySet) -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise DependencyError(
            f"{deps.source} is exported with uv, which is not on this machine "
            "(pip install uv), or name a requirements file"
        )
    with tempfile.TemporaryDirectory(prefix="deploylib-uv-") as tmp:
        root = Path(tmp)
        for name, data in deps.files:
            (root / posixpath.basename(name)).write_bytes(data)
        args = [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"]
        args += ["--format", "requirements-txt", "--quiet"]
        for extra in deps.extras:
            args += ["--extra", extra]
        env = {**os.environ, "UV_NO_CONFIG": "1"}
        done = subprocess.run(
            args, cwd=root, capture_output=True, text=True, timeout=120, env=env, check=False
        )
    if done.returncode != 0:
        raise DependencyError(f"uv export of {deps.source} failed: {done.stderr.strip()[-500:]}")
    return done.stdout
