"""The env file deploylib writes into each release (placeholder until the round-trip writer)."""

from __future__ import annotations

from collections.abc import Mapping

from deploylib.secrets import Secret, reveal


def render(variables: Mapping[str, str | Secret]) -> str:
    lines = ["# written by deploylib on every deploy\n"]
    for name, value in variables.items():
        text = reveal(value)
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{name}="{escaped}"\n')
    return "".join(lines)
