"""The free space of a directory's file system, as shell: ``df -Pk`` read by the shell itself.

``df -P`` prints one line per file system: its name, 1024-blocks, used, available, capacity
(``NN%``) and where it is mounted. The name and the mount point may hold blanks (a FUSE or
network file system's name, a mount point with a space), so the fields are not counted from
either end: the available KiB are the third of the first three numbers followed by a capacity.
The line is taken apart word by word with parameter expansions
(blanks are spaces and tabs, whatever ``IFS`` the login set; no pathname expansion, no word
splitting, so zsh reads it as sh does): built-ins only, after ``df``. Its variables start with
``__dl_``."""

from __future__ import annotations

_DIGITS = "''|*[!0-9]*) ;; *) "
_BLANK = " \t"

#: shell that takes ``$__dl_r`` (df's line) apart and leaves the available KiB in ``$__dl_a``
#: ("" when none is found)
_TAKE_APART = (
    "__dl_a=; __dl_1=; __dl_2=; __dl_3=; while :; do "
    f'__dl_r=${{__dl_r#"${{__dl_r%%[!{_BLANK}]*}}"}}; [ -n "$__dl_r" ] || break; '
    f'__dl_w=${{__dl_r%%[{_BLANK}]*}}; __dl_r=${{__dl_r#"$__dl_w"}}; '
    f"case $__dl_1 in {_DIGITS}case $__dl_2 in {_DIGITS}case $__dl_3 in {_DIGITS}"
    "case $__dl_w in [0-9]*%|-) __dl_a=$__dl_3; break;; esac;; esac;; esac;; esac; "
    "__dl_1=$__dl_2; __dl_2=$__dl_3; __dl_3=$__dl_w; done"
)

#: shell that reads df's output on stdin and prints the available KiB ("" when none is found)
READ_AVAILABLE = f'{{ IFS= read -r _; IFS= read -r __dl_r; {_TAKE_APART}; echo "$__dl_a"; }}'


def available_kb(path: str) -> str:
    """Shell that prints the KiB available to ``path`` (a shell word: quoted, or ``"$p"``)."""
    return f"df -Pk {path} | {READ_AVAILABLE}"


def set_available_kb(variable: str, path: str) -> str:
    """Shell that sets ``variable`` to the KiB available to ``path`` ("" when df says none),
    in this shell: df's output is read from a variable, not a pipe (two forks fewer than
    ``$(available_kb(path))``: the pipe's reading end and the substitution around it)."""
    return (
        f'{{ __dl_r="$(df -Pk {path})" || :; '
        # the second line: what follows the first line break, up to the next one
        "case $__dl_r in *'\n'*) __dl_r=${__dl_r#*'\n'}; __dl_r=${__dl_r%%'\n'*};; "
        f"*) __dl_r=;; esac; {_TAKE_APART}; {variable}=$__dl_a; "
        "unset __dl_r __dl_w __dl_a __dl_1 __dl_2 __dl_3; }"
    )
