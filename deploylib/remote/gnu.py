"""The commands of deploylib's remote scripts whose flags only GNU coreutils has, in one place.

Debian, Ubuntu, RHEL and Alpine with coreutils have them; BSD and macOS spell them otherwise
(``mv -h``, ``stat -f %m``, ``shasum -a 256``). A host with another userland is served later by
a map with these same names. Each takes its paths as they are and quotes them.
"""

from __future__ import annotations

import shlex


def rename_onto(source: str, target: str) -> str:
    """Rename ``source`` to ``target`` itself, never into it when it is a directory or a link
    to one (``rename(2)``, atomic)."""
    return f"mv -T {shlex.quote(source)} {shlex.quote(target)}"


def mtime(path: str) -> str:
    """Print the modification time of ``path`` in seconds since the epoch."""
    return f"stat -c %Y {shlex.quote(path)}"


def sha256(path: str) -> str:
    """Print the sha256 of ``path``, then its name."""
    return f"sha256sum {shlex.quote(path)}"


def sha256_stdin() -> str:
    """Print the sha256 of standard input, then ``-``."""
    return "sha256sum"
