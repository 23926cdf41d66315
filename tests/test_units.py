"""Placeholders, commands, secrets and release-log logic: pure functions, tables of cases."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pytest

from deploylib import Command, Secret
from deploylib.errors import ConfigError
from deploylib.placeholders import render_shell, render_text, validate
from deploylib.releases import (
    STATE_MARK,
    Layout,
    TargetState,
    make_release_id,
    parse_state,
    switch_command,
    validate_release_id,
)
from deploylib.secrets import Redactor

VALUES = {"release": "20260101T000000Z-abc", "deploy_to": "/srv/my app", "host": "web1"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("echo {release}", "echo 20260101T000000Z-abc"),
        ("ls {deploy_to}", "ls '/srv/my app'"),
        ("awk '{print $1}' {host}", "awk '{print $1}' web1"),
        ("echo ${HOME} {{release}}", "echo ${HOME} {release}"),
        ("echo {HOST}", "echo {HOST}"),
    ],
)
def test_render_shell(template: str, expected: str) -> None:
    assert render_shell(template, VALUES) == expected


@pytest.mark.parametrize(
    "hostile", ["$(touch x)", "`touch x`", "a; touch x", "it's", "a\ntouch x", "../.."]
)
def test_hostile_values_stay_one_shell_word(hostile: str, tmp_path: object) -> None:
    line = render_shell("printf '%s' {host}", {"host": hostile})
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, cwd=str(tmp_path))
    assert out.stdout == hostile
    assert not (tmp_path / "x").exists()  # type: ignore[operator]


def test_unknown_placeholder_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"\{relase\}"):
        validate("echo {relase}", "run")
    validate("echo {release} ${VAR} {{literal}} {print $1}", "run")


def test_render_text_fills_variables_with_defaults() -> None:
    assert (
        render_text("http://{host}:${PORT:-80}/${NONE:-x}", VALUES, {"PORT": "8000"})
        == "http://web1:8000/x"
    )


def test_command_line_with_cwd() -> None:
    assert Command("make", cwd="/srv/my app").line == "cd '/srv/my app' && make"
    assert Command("a\nb", cwd="/x").line == "cd /x && {\na\nb\n}"
    assert Command.of("touch", "a b").line == "touch 'a b'"


def test_secret_prints_masked_everywhere() -> None:
    secret = Secret("topsecret")
    assert str(secret) == repr(secret).replace("Secret(", "").rstrip(")").strip("'") == "***"
    assert f"{secret}" == "***" and secret.reveal() == "topsecret"
    redactor = Redactor(["topsecret", "ab"])
    assert redactor.redact("x topsecret y ab") == "x *** y ab"  # 2 characters are not searched


def test_release_ids() -> None:
    now = datetime(2026, 11, 27, 10, 5, 3, tzinfo=UTC)
    assert make_release_id(now, "0123456789abcdef") == "20261127T100503Z-0123456"
    assert make_release_id(now, "v1.2/$(x)") == "20261127T100503Z-v12x"
    assert make_release_id(now, "") == "20261127T100503Z"
    for bad in ("../etc", "20261127T100503Z-a b", "20261127T100503Z;rm", ""):
        with pytest.raises(ValueError):
            validate_release_id(bad)


def test_switch_command_is_symlink_then_rename() -> None:
    assert switch_command(Layout("/srv/a"), "20260101T000000Z-abc").line == (
        "test -f /srv/a/releases/20260101T000000Z-abc/REVISION && "
        "ln -sfn releases/20260101T000000Z-abc /srv/a/.current-20260101T000000Z-abc && "
        "mv -T /srv/a/.current-20260101T000000Z-abc /srv/a/current"
    )
    assert switch_command(Layout("/srv/a"), None).line == "rm -f /srv/a/current"


def entry(event: str, release: str, outcome: str = "success") -> dict[str, str]:
    return {"event": event, "release": release, "outcome": outcome}


def test_parse_state_sections() -> None:
    output = (
        f"{STATE_MARK}current\nreleases/B\n{STATE_MARK}releases\nB\n20260101T000000Z-a\nnot-a-release\n"
        f'{STATE_MARK}lock\nlocked\n{{"user": "u"}}\n\n{STATE_MARK}log\n'
        f"{json.dumps(entry('deploy', 'B'))}\nnot json\n"
    )
    state = parse_state(output)
    assert state.current == "B"
    assert state.releases == frozenset({"20260101T000000Z-a"})
    assert state.locked and state.lock_owner == {"user": "u"}
    assert [e["release"] for e in state.log] == ["B"]
    assert parse_state("") == TargetState()


@pytest.mark.parametrize(
    ("log", "current", "on_disk", "target"),
    [
        ([entry("deploy", "A"), entry("deploy", "B"), entry("deploy", "C")], "C", "ABC", "B"),
        (
            [
                entry("deploy", "A"),
                entry("deploy", "B"),
                entry("deploy", "C"),
                entry("rollback", "B"),
            ],
            "B",
            "ABC",
            "A",
        ),
        # deploy after a rollback: back goes to what was live before, not to the newer dir
        (
            [
                entry("deploy", "A"),
                entry("deploy", "B"),
                entry("rollback", "A"),
                entry("deploy", "D"),
            ],
            "D",
            "ABD",
            "A",
        ),
        # failed deploys are never targets
        (
            [entry("deploy", "A"), entry("deploy", "F", "failed"), entry("deploy", "B")],
            "B",
            "ABF",
            "A",
        ),
        # a target no longer on disk is skipped
        ([entry("deploy", "A"), entry("deploy", "B"), entry("deploy", "C")], "C", "AC", "A"),
        ([entry("deploy", "A")], "A", "A", None),
    ],
)
def test_rollback_target_from_the_log(
    log: list[dict[str, str]], current: str, on_disk: str, target: str | None
) -> None:
    state = TargetState(current=current, releases=frozenset(on_disk), log=tuple(log))
    assert state.rollback_target() == target


def test_removable_protects_current_and_rollback_target() -> None:
    log = [entry("deploy", r) for r in "ABCDE"] + [entry("rollback", "B")]
    state = TargetState(current="B", releases=frozenset("ABCDEX"), log=tuple(log))
    # keep 2 newest deployed (D, E), current B and its rollback target A; X was never deployed
    assert state.removable(2) == ["C", "X"]


def test_select_hosts_by_name_and_role() -> None:
    from deploylib.actions import select_hosts
    from deploylib.hosts import Host
    from deploylib.testing import environment

    env = environment(
        hosts=[
            Host("web1", "a.example", roles=("web",)),
            Host("db1", "b.example", roles=("db",)),
            Host("web2", "c.example", roles=("web", "cron")),
        ]
    )
    assert [h.name for h in select_hosts(env, None, None)] == ["web1", "db1", "web2"]
    assert [h.name for h in select_hosts(env, "web2,b.example", None)] == ["db1", "web2"]
    assert [h.name for h in select_hosts(env, None, "web")] == ["web1", "web2"]
    assert [h.name for h in select_hosts(env, "web1,web2", "cron")] == ["web2"]
    with pytest.raises(ConfigError, match="--roles"):
        select_hosts(env, None, "nope")


@pytest.mark.parametrize(
    "value", ["plain", "it's $(touch x) `y`", "two\nlines\n", "back\\slash\\n"]
)
def test_ssh_env_lines_round_trip_through_sh(value: str, tmp_path: object) -> None:
    from deploylib.backends.ssh import ENV_PRELUDE, env_line

    script = ENV_PRELUDE + 'printf %s "$V"'
    stdin = env_line("V", value) + "\n\n"
    out = subprocess.run(
        ["sh", "-c", script], input=stdin, capture_output=True, text=True, cwd=str(tmp_path)
    )
    assert out.stdout == value
    assert not (tmp_path / "x").exists()  # type: ignore[operator]
    with pytest.raises(ValueError):
        env_line("X; touch x", "v")
