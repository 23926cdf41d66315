"""What ``setup`` runs on a host: the facts it checks (tools, flags, Python, space, clock), the
Debian packages it installs, and the directories it makes. Each command prints ``key=value``
lines that ``provisioning`` reads; with ``dry`` the changing ones only say what they would do.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from deploylib.commands import Command
from deploylib.remote import free_space
from deploylib.remote.layout import ENV_FILE, Layout
from deploylib.remote.lock import guard_for

#: the programs deploylib's own remote commands run, and the package that brings each
TOOLS = {
    "sh": "dash",
    "mkdir": "coreutils",
    "mv": "coreutils",
    "ln": "coreutils",
    "rm": "coreutils",
    "cat": "coreutils",
    "tail": "coreutils",
    "df": "coreutils",
    "stat": "coreutils",
    "date": "coreutils",
    "touch": "coreutils",
    "readlink": "coreutils",
    "sha256sum": "coreutils",
    "tar": "tar",
    "gzip": "gzip",
    "awk": "mawk",
    "grep": "grep",
}
#: GNU flags deploylib's commands use (see ``remote.gnu``): the check, and what it needs
FLAGS = {
    "mv -T": "mv --help 2>&1 | grep -q -- '-T'",
    "stat -c": "stat -c %Y / >/dev/null 2>&1",
}
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def facts_command(layout: Layout, *, python: str | None) -> Command:
    """Read-only: which tools and flags the host has, its Python (when a step needs one),
    the free space and writability where ``deploy_to`` is (or would be), its clock, its user."""
    q = shlex.quote
    lines = [
        f"if command -v {q(tool)} >/dev/null 2>&1; then echo tool.{tool}=ok; "
        f"else echo tool.{tool}=missing; fi"
        for tool in TOOLS
    ]
    lines += [
        f"if {test}; then echo {q('flag.' + flag.replace(' ', '') + '=ok')}; "
        f"else echo {q('flag.' + flag.replace(' ', '') + '=missing')}; fi"
        for flag, test in FLAGS.items()
    ]
    if python:
        # the interpreter is needed either way; uv stands in only for its venv module
        lines.append(
            f"if ! command -v {q(python)} >/dev/null 2>&1; then echo python=missing; "
            f"elif {q(python)} -c 'import venv, ensurepip' >/dev/null 2>&1; then echo python=ok; "
            'elif command -v uv >/dev/null 2>&1 || [ -x "$HOME/.local/bin/uv" ]; '
            "then echo python=uv; else echo python=novenv; fi"
        )
    lines += [
        f'p={q(layout.deploy_to)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done',
        "echo free_kb=$(" + free_space.available_kb('"$p"') + ")",
        'if [ -w "$p" ]; then echo writable=yes; else echo writable=no; fi',
        "echo now=$(date +%s)",
        "echo user=$(id -un) uid=$(id -u)",
    ]
    return Command("\n".join(lines), description="setup facts", timeout=30)


def packages_command(packages: Sequence[str], *, dry: bool) -> Command:
    """The Debian packages of ``packages`` not installed, installed with apt-get (as root,
    else through ``sudo -n``: a user who may not is told the rule to add, never prompted)."""
    q = shlex.quote
    for name in packages:
        if not PACKAGE_NAME.fullmatch(name):
            raise ValueError(f"not a Debian package name: {name!r}")
    names = " ".join(q(p) for p in packages)
    refused = (
        "this user may not run apt-get through sudo without a password: add "
        '"<user> ALL=(root) NOPASSWD: /usr/bin/apt-get" to /etc/sudoers.d/deploylib, '
        "or install the packages by hand"
    )
    lines = [
        'missing=""',
        f"for p in {names}; do",
        "  dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'install ok installed' "
        '|| missing="$missing $p"',
        "done",
        'echo "missing=${missing# }"',
    ]
    if not dry:
        lines += [
            '[ -n "$missing" ] || exit 0',
            'if [ "$(id -u)" = 0 ]; then as_root=""; '
            f"elif sudo -n true 2>/dev/null; then as_root='sudo -n'; "
            f"else echo {q(refused)} >&2; exit 1; fi",
            "export DEBIAN_FRONTEND=noninteractive",
            "$as_root apt-get update -qq >/dev/null && "
            "$as_root apt-get install -y -qq --no-install-recommends $missing >/dev/null "
            '&& echo "installed=${missing# }"',
        ]
    return Command("\n".join(lines), description="setup packages", timeout=900)


def directories_command(
    layout: Layout,
    shared_dirs: Sequence[str],
    shared_files: Sequence[str],
    *,
    dry: bool,
    token: str | None = None,
) -> Command:
    """Make ``deploy_to``, ``releases/``, ``shared/``, the shared dirs and (empty) shared files
    that are missing; print each one as ``made=PATH`` (``would make`` with ``dry``)."""
    q = shlex.quote
    dirs = [layout.deploy_to, layout.releases, layout.shared]
    dirs += [f"{layout.shared}/{d}" for d in shared_dirs]
    files = [f"{layout.shared}/{f}" for f in shared_files if f != ENV_FILE]
    verb = "would_make" if dry else "made"
    lines = []
    for path in dirs:
        make = "" if dry else f"mkdir -p {q(path)} && "
        lines.append(f"[ -d {q(path)} ] || {{ {make}echo {q(verb + '=' + path + '/')}; }}")
    for path in files:
        make = "" if dry else f"mkdir -p {q(path.rsplit('/', 1)[0])} && touch {q(path)} && "
        lines.append(f"[ -e {q(path)} ] || {{ {make}echo {q(verb + '=' + path)}; }}")
    return Command(
        "\n".join(lines) if dry else "set -e\n" + "\n".join(lines),
        description="setup directories",
        guard=guard_for(layout, token) if not dry else "",
        timeout=60,
    )
