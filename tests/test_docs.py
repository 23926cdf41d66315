"""The docs say what the code does: every deploy.toml shown in README.md and docs/ is accepted
by the schema, key by key, and every command-line option the docs show exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from deploylib.config.loading import validate
from tests.conftest import REPO, program

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BASE: dict[str, Any] = {
    "app": "docs",
    "deploy_to": "/srv/docs",
    "environments": {"dev": {"hosts": ["local"]}},
}


def toml_shown(text: str) -> list[str]:
    """The ```toml blocks, and inline settings such as `[notify] webhook = "..."`."""
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    inline = re.findall(r"`(\[[a-z_.]+\] [a-z_]+ = [^`]+)`", text)
    return blocks + [snippet.replace("] ", "]\n", 1) for snippet in inline]


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_deploy_toml_in_the_docs_is_accepted(doc: Path) -> None:
    for snippet in toml_shown(doc.read_text()):
        raw = merged(BASE, tomllib.loads(snippet))
        for env in raw["environments"].values():
            env.setdefault("hosts", ["local"])
        validate(raw, doc)  # raises ConfigError naming the key the docs got wrong


def test_the_readme_shows_settings_and_the_check_catches_a_wrong_one() -> None:
    shown = toml_shown((REPO / "README.md").read_text())
    assert len(shown) >= 2  # the deploy.toml block and the [notify] line
    with pytest.raises(Exception, match="keep_release"):
        validate(merged(BASE, {"keep_release": 3}), REPO / "README.md")


def test_every_option_the_readme_shows_for_a_task_exists() -> None:
    import subprocess

    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z]+) ([^`|]*)` \|", text, re.M)
    assert rows
    for task, usage in rows:
        shown = set(re.findall(r"--([a-z-]+)", usage))
        helped = subprocess.run(program(task, "--help"), capture_output=True, text=True)
        assert helped.returncode == 0, (task, helped.stderr)
        offered = set(re.findall(r"--([a-z-]+)", helped.stdout))
        assert shown <= offered, (task, shown - offered)
