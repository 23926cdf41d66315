"""The commands that read and replace deploylib's firewall rules on a target, as data.

nftables: deploylib owns one table, ``inet deploylib``, and nothing else. ``read_command``
prints it (nothing when it is absent); ``apply_command`` replaces it in one ``nft -f -``
transaction fed on stdin — ``table`` (creates it if absent, so the ``delete`` cannot fail),
``delete table``, then the new table — so the kernel swaps the old rules for the new ones at
once, a failure leaves the old ones in place, and applying twice never duplicates a rule.
No other table is ever listed, flushed or deleted.

ufw: ``ufw_commands`` removes the rules deploylib added before (they carry the comment
``deploylib``) and adds the wanted ones. Only the command text is tested; ufw is not exercised
on a real host.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from deploylib.commands import Command

TABLE = "inet deploylib"
#: the exit status the read and apply commands end with when there is no ``nft`` to run
NFT_MISSING = 127
NFT_MISSING_MESSAGE = "nft (nftables) is not installed on this host: run 'apt-get install nftables'"
UFW_COMMENT = "deploylib"
UFW_MISSING_MESSAGE = "ufw is not installed on this host: run 'apt-get install ufw'"

_NEED_NFT = (
    "command -v nft >/dev/null 2>&1 || "
    f"{{ echo {shlex.quote(NFT_MISSING_MESSAGE)} >&2; exit {NFT_MISSING}; }}"
)


READ = "read firewall"
APPLY = "apply firewall"
UFW_APPLY = "apply firewall (ufw)"
#: what a command that ended with ``NFT_MISSING`` lacked, by its description
MISSING_MESSAGES = {
    READ: NFT_MISSING_MESSAGE,
    APPLY: NFT_MISSING_MESSAGE,
    UFW_APPLY: UFW_MISSING_MESSAGE,
}


def read_command() -> Command:
    """Print deploylib's table as ``nft list table`` shows it; nothing when it is absent.
    Fails (exit 1) when the tables cannot be listed (no permission), ``NFT_MISSING`` without
    nft. Changes nothing."""
    script = "\n".join(
        [
            _NEED_NFT,
            "tables=$(nft list tables inet) || exit 1",
            "if printf '%s\\n' \"$tables\" | grep -qx "
            f"{shlex.quote('table ' + TABLE)}; then nft list table {TABLE}; fi",
        ]
    )
    return Command(script, description=READ)


def transaction(ruleset: str) -> str:
    """What ``nft -f -`` reads: deploylib's table replaced by ``ruleset``, all or nothing."""
    return f"table {TABLE}\ndelete table {TABLE}\n{ruleset.rstrip()}\n"


def apply_command(ruleset: str) -> Command:
    """Replace deploylib's table by ``ruleset`` (the text of ``table inet deploylib { ... }``)
    in one transaction."""
    return Command(
        f"{_NEED_NFT}\nnft -f -",
        stdin=transaction(ruleset).encode(),
        description=APPLY,
    )


def ufw_rule(port: int, proto: str, source: str | None) -> str:
    """The ``ufw allow`` line of one allowed port, marked as deploylib's."""
    words = ["ufw", "allow", "proto", proto]
    words += ["from", source] if source else []
    words += ["to", "any", "port", str(port), "comment", UFW_COMMENT]
    return shlex.join(words)


#: removes every ufw rule whose comment is deploylib's, highest number first (numbers shift)
UFW_REMOVE_OURS = (
    "ufw status numbered | "
    f"sed -n 's/^\\[ *\\([0-9][0-9]*\\)\\].*# {UFW_COMMENT}$/\\1/p' | sort -rn | "
    'while read -r n; do ufw --force delete "$n" >/dev/null || exit 1; done'
)


def ufw_commands(rules: Sequence[tuple[int, str, str | None]], *, drop: bool) -> list[Command]:
    """Replace deploylib's ufw rules by ``rules`` (port, proto, source). With ``drop``, also
    deny incoming by default and enable ufw; otherwise ufw's defaults and state are left as
    they are (rules are only added)."""
    lines = [
        "command -v ufw >/dev/null 2>&1 || "
        f"{{ echo {shlex.quote(UFW_MISSING_MESSAGE)} >&2; exit {NFT_MISSING}; }}",
        UFW_REMOVE_OURS,
    ]
    lines += [ufw_rule(port, proto, source) for port, proto, source in rules]
    if drop:
        lines += ["ufw default deny incoming", "ufw --force enable"]
    return [Command(" &&\n".join(lines), description=UFW_APPLY)]
