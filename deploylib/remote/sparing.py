"""Shell lines that start a process only when there is something to do.

A deploy's scripts run on every host at once, and on a busy host each ``rm`` or ``mkdir``
costs a fork and an exec (about 0.8 ms of CPU each on the benchmark machine), most often to
remove what is not there or to make what exists. These test first with the shell's built-ins
(``[``, ``for``), which every POSIX shell has, and leave the same result as the plain command:
the same paths made or gone, the same failure when it cannot be done. Each takes its paths as
they are and quotes them.
"""

from __future__ import annotations

import shlex


def absent(path: str) -> str:
    """Shell that passes when nothing is at ``path``, not even a dangling symlink."""
    q = shlex.quote(path)
    return f"{{ [ ! -e {q} ] && [ ! -L {q} ]; }}"


def remove(path: str, *, tree: bool = False) -> str:
    """``rm -f path`` (``rm -rf`` with ``tree``), run only when something is there."""
    return f"{{ {absent(path)} || rm -{'rf' if tree else 'f'} {shlex.quote(path)}; }}"


def make_dirs(*paths: str) -> str:
    """``mkdir -p paths``, run only when one of them is not a directory (or a link to one)."""
    quoted = [shlex.quote(p) for p in paths]
    tests = " && ".join(f"[ -d {q} ]" for q in quoted)
    return f"{{ {{ {tests}; }} || mkdir -p {' '.join(quoted)}; }}"


def empty_dir(path: str) -> str:
    """``rm -rf path && mkdir -p path``: an empty directory at ``path``. The removal runs only
    when something is in it, or it is not a directory (a link to one is replaced too)."""
    q = shlex.quote(path)
    look = (
        f'for __dl_f in {q}/* {q}/.[!.]* {q}/..?*; do if [ -e "$__dl_f" ] || '
        '[ -L "$__dl_f" ]; then __dl_dirty=1; break; fi; done'
    )
    return (
        f"{{ __dl_dirty=; if [ -L {q} ] || [ ! -d {q} ]; then __dl_dirty=1; "
        f"else {globbing(look)}; fi; "
        f'[ -z "$__dl_dirty" ] || {{ rm -rf {q} && mkdir -p {q}; }}; }}'
    )


def globbing(body: str) -> str:
    """Shell that runs ``body`` with pathname expansion as POSIX has it: a login started with
    `set -f` (noglob) would see no file behind a ``*``, and one with bash's `failglob` would
    stop the whole script at a ``*`` that matches nothing. Both are put back as they were after
    ``body``, whatever its exit status (under `set -e`, a failing ``body`` ends the shell first,
    as any failing command would); the group passes when ``body`` did. Built-ins only."""
    return (
        "{ __dl_noglob=; __dl_failglob=; case $- in *f*) __dl_noglob=1; set +f;; esac; "
        'if [ -n "${BASH_VERSION-}" ] && shopt -q failglob 2>/dev/null; then '
        "__dl_failglob=1; shopt -u failglob; fi; "
        f'{{ {body}; }}; __dl_rc=$?; [ -z "$__dl_noglob" ] || set -f; '
        '[ -z "$__dl_failglob" ] || shopt -s failglob; '
        'unset __dl_noglob __dl_failglob; [ "$__dl_rc" -eq 0 ]; }'
    )
