"""Commands for blue-green slots on a host: point the proxy at a slot, and keep the slot record.

``proxy_command`` rewrites the nginx upstream file — only ``server 127.0.0.1:PORT [weight=N];``
lines, which the user's own ``upstream { }`` block includes — atomically (a temporary file in
the same directory, then rename(2)), checks the whole configuration (``nginx -t``), and reloads
the proxy. A configuration the check refuses, or a reload that fails, puts the file back as it
was (and reloads that), so the proxy never serves from a file deploylib could not load.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import replace

from deploylib.commands import Command
from deploylib.remote.layout import Layout
from deploylib.remote.lock import guard_for
from deploylib.slots import SlotState

#: a server line that takes requests (a ``backup`` one takes them only when the others fail)
UPSTREAM_SERVER = re.compile(
    r"^\s*server\s+127\.0\.0\.1:(\d{1,5})\b(?![^;\n]*\bbackup\b)", re.MULTILINE
)
HEADER = "# written by deploylib for blue-green deploys: changed at every switch, do not edit"


def slots_file(layout: Layout) -> str:
    return f"{layout.meta}/slots.json"


def upstream_lines(
    servers: Sequence[tuple[int, int | None]], backup: Sequence[int] = ()
) -> list[str]:
    """The upstream file's lines for ``(port, weight)`` pairs (weight None: nginx's default),
    then a ``backup`` line for each of ``backup``: nginx sends a request there only when the
    servers fail to take it (a swarm service's old tasks, stopped before the proxy switch)."""
    # with backups, nginx never marks a server down (``max_fails=0``): a request tries the
    # servers, then the backups, every time, so whichever of them listens takes it
    never_down = " max_fails=0" if backup else ""
    lines = [HEADER]
    for port, weight in servers:
        weighted = f" weight={weight}" if weight else ""
        lines.append(f"server 127.0.0.1:{port}{weighted}{never_down};")
    lines += [f"server 127.0.0.1:{port} backup{never_down};" for port in backup]
    return lines


def proxy_command(
    layout: Layout,
    upstream_file: str,
    servers: Sequence[tuple[int, int | None]],
    *,
    check: str,
    reload: str,
    token: str | None = None,
    description: str = "proxy switch",
    backups: Sequence[int] = (),
) -> Command:
    """Send the proxy's traffic to ``servers``: write the upstream file, ``check`` the proxy's
    configuration, ``reload`` it; on any failure the file as it was is put back (and reloaded
    when the reload was the failure), and the check's or reload's output is the error. A file
    that names these servers already is left alone: nothing is checked or reloaded. ``backups``:
    ports nginx sends requests to only when the servers fail (``upstream_lines``)."""
    q = shlex.quote
    file = q(upstream_file)
    temporary = q(f"{upstream_file}.deploylib.tmp")
    backup = q(f"{upstream_file}.deploylib.bak")
    content = "".join(f"{q(line)} " for line in upstream_lines(servers, backups))
    restore = f"if [ -e {backup} ]; then mv -f {backup} {file}; else rm -f {file}; fi"
    script = "; ".join(
        [
            f'mkdir -p "$(dirname {file})" || exit 1',
            f"if ! printf '%s\\n' {content}> {temporary}; then rm -f {temporary}; "
            f"echo {q('could not write ' + upstream_file)} >&2; exit 1; fi",
            # the proxy already has these servers (a put-back after a switch it refused)
            f"if cmp -s {temporary} {file}; then rm -f {temporary}; exit 0; fi",
            f"rm -f {backup}",
            f"if [ -e {file} ]; then cp -p {file} {backup} || exit 1; fi",
            f"if ! mv -f {temporary} {file}; then rm -f {temporary} {backup}; "
            f"echo {q('could not write ' + upstream_file)} >&2; exit 1; fi",
            f"if ! out=$( {{ {check} ; }} 2>&1 ); then {restore}; "
            f"echo {q('the proxy refused the new upstream file (' + check + '):')} >&2; "
            'printf "%s\\n" "$out" >&2; exit 1; fi',
            f"if ! out=$( {{ {reload} ; }} 2>&1 ); then {restore}; "
            f"{{ {reload} ; }} >/dev/null 2>&1; "
            f"echo {q('the proxy did not reload (' + reload + '):')} >&2; "
            'printf "%s\\n" "$out" >&2; exit 1; fi',
            f"rm -f {backup}",
        ]
    )
    return Command(script, description=description, guard=guard_for(layout, token))


def read_upstream_command(upstream_file: str) -> Command:
    """Print the upstream file (nothing when there is none); changes nothing."""
    script = f"cat {shlex.quote(upstream_file)} 2>/dev/null; true"
    return Command(script, description="read upstream")


def upstream_ports(text: str) -> set[int]:
    """The ports of the ``server 127.0.0.1:PORT ...;`` lines of an upstream file."""
    return {int(port) for port in UPSTREAM_SERVER.findall(text)}


def record_slots_command(layout: Layout, state: SlotState, token: str | None = None) -> Command:
    """Replace the slot record with ``state``, all or nothing: staged, then renamed into place
    (``stage_slots_command`` and ``commit_slots_command`` in one command)."""
    staged = stage_slots_command(layout, state, token)
    commit = commit_slots_command(layout, token)
    script = f"{{ {staged.script}; }} && {commit.script}"
    return replace(staged, script=script, description="record slots")


def stage_slots_command(layout: Layout, state: SlotState, token: str | None = None) -> Command:
    """Write ``state`` next to the slot record, not yet in its place: a slot step stages its
    record before it changes the slot, so a record that cannot be written (a full disk)
    changes nothing; ``commit_slots_command`` puts it in place once the slot changed."""
    q = shlex.quote
    path = slots_file(layout)
    staged = q(f"{path}.next")
    script = (
        f"{{ mkdir -p {q(layout.meta)} && cat > {staged}; }} "
        f"|| {{ rm -f {staged}; echo {q('could not write ' + path)} >&2; exit 1; }}"
    )
    return Command(
        script,
        stdin=(state.as_json() + "\n").encode(),
        description="stage slots",
        guard=guard_for(layout, token),
    )


def commit_slots_command(layout: Layout, token: str | None = None) -> Command:
    """Put the record ``stage_slots_command`` wrote in place of the slot record (rename(2))."""
    q = shlex.quote
    path = slots_file(layout)
    script = f"mv -f {q(path + '.next')} {q(path)}"
    return Command(script, description="record slots", guard=guard_for(layout, token))
