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


def sha256_read(path: str) -> str:
    """Print the sha256 of ``path`` read on standard input, then more words. OpenSSL's when the
    host has it (it uses the CPU's SHA instructions: 4 ms for a 1.8 MB artifact on the
    benchmarks' machine, against 12 ms for coreutils' ``sha256sum``), else coreutils'. Whatever
    makes the first fail (absent, refused by its configuration), the second reads the file
    afresh: a digest printed is always the whole file's."""
    quoted = shlex.quote(path)
    return f"{{ openssl dgst -sha256 -r < {quoted} 2>/dev/null || sha256sum < {quoted}; }}"
