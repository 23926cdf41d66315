"""Placeholders, commands, secrets and release-log logic: pure functions, tables of cases."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploylib import Command, Secret
from deploylib.errors import ConfigError
from deploylib.placeholders import render_shell, render_text, validate
from deploylib.remote.layout import Layout, make_release_id, validate_release_id
from deploylib.remote.release import switch_command
from deploylib.remote.state import STATE_MARK, TargetState, parse_state, render_state
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


def test_switch_command_is_symlink_then_rename(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "my app"))
    release, other = "20260101T000000Z-abc", "20260102T000000Z-def"
    (tmp_path / "my app" / "releases" / release).mkdir(parents=True)
    (tmp_path / "my app" / "releases" / release / "REVISION").write_text("x\n")
    (tmp_path / "my app" / "releases" / other).mkdir()  # no REVISION: not complete

    assert sh(switch_command(layout, release).line).returncode == 0
    current = tmp_path / "my app" / "current"
    assert os.readlink(current) == f"releases/{release}"
    # an incomplete release is refused, saying what is missing and where current points
    refused = sh(switch_command(layout, other).line)
    assert refused.returncode == 1
    assert f"{other}/REVISION is missing" in refused.stderr
    assert f"current points at releases/{release}" in refused.stderr
    assert os.readlink(current) == f"releases/{release}"
    # putting back a release that was live needs only its directory
    assert sh(switch_command(layout, other, complete=False).line).returncode == 0
    assert os.readlink(current) == f"releases/{other}"
    assert sh(switch_command(layout, None).line).returncode == 0 and not current.is_symlink()
    # a current that is a directory is never replaced, and no temporary link is left behind
    current.mkdir()
    assert sh(switch_command(layout, release).line).returncode == 1
    assert current.is_dir() and not list((tmp_path / "my app").glob(".current-*"))


def sh(script: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, text=True)


def entry(event: str, release: str, outcome: str = "success") -> dict[str, str]:
    return {"event": event, "release": release, "outcome": outcome}


def test_parse_state_sections() -> None:
    good = "20260101T000000Z-a"
    output = (
        f"{STATE_MARK}current\nlink\nreleases/{good}\n{STATE_MARK}releases\nB\n{good} complete\n"
        f'not-a-release\n{STATE_MARK}lock\nlocked\n{{"user": "u"}}\n\n{STATE_MARK}log\nlines=3\n'
        f"{json.dumps(entry('deploy', good))}\nnot json\n{{}}\n\n{STATE_MARK}end\n"
    )
    state = parse_state(output, Layout("/srv/a"))
    assert state.current == good and state.current_kind == "release"
    assert state.releases == state.complete == frozenset({good})
    assert state.locked and state.lock_owner == {"user": "u"}
    assert [e["release"] for e in state.log] == [good]
    assert state.damaged == (2, 3)  # not JSON, and JSON without the keys of a log line
    assert not parse_state("").read
    assert parse_state(render_state()) == TargetState(log_start=1)


@pytest.mark.parametrize(
    ("link", "kind"),
    [
        ("releases/20260101T000000Z-a", "release"),
        ("/srv/a/releases/20260101T000000Z-a", "release"),
        ("./releases/20260101T000000Z-a/", "release"),
        ("/srv/other/releases/20260101T000000Z-a", "foreign"),
        ("/opt/app", "foreign"),
        ("releases/20240101120000", "foreign"),  # not a release id deploylib makes
        ("../../etc", "foreign"),
    ],
)
def test_current_pointing_elsewhere_is_foreign(link: str, kind: str) -> None:
    output = f"{STATE_MARK}current\nlink\n{link}\n{STATE_MARK}end\n"
    state = parse_state(output, Layout("/srv/a"))
    assert state.current_kind == kind
    assert (state.current is not None) == (kind == "release")
    assert (state.layout_problem(Layout("/srv/a")) is None) == (kind == "release")


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
    state = TargetState(
        current=current,
        releases=frozenset(on_disk),
        complete=frozenset(on_disk),
        log=tuple(log),
    )
    assert state.rollback_target() == target


def test_removable_protects_current_and_rollback_target() -> None:
    log = [entry("deploy", r) for r in "ABCDE"] + [entry("rollback", "B")]
    state = TargetState(
        current="B", releases=frozenset("ABCDEX"), complete=frozenset("ABCDEX"), log=tuple(log)
    )
    # keep 2 newest deployed (D, E), current B and its rollback target A; X is not in the log:
    # kept (and reported) rather than guessed about
    assert state.removable(2) == ["C"]
    assert state.unexplained() == ["X"]


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


def test_the_rollback_release_is_one_for_every_target_or_says_why_not() -> None:
    from deploylib.runner import rollback_release

    def state(current: str, *live: str) -> TargetState:
        log = tuple(entry("deploy", r) for r in live)
        on_disk = frozenset(live)
        return TargetState(current=current, releases=on_disk, complete=on_disk, log=log)

    assert rollback_release({"a": state("B", "A", "B"), "b": state("B", "A", "B")}, None) == (
        "A",
        [],
    )
    release, why = rollback_release({"a": state("B", "A", "B"), "b": state("C", "X", "C")}, None)
    assert release is None and "disagree" in why[0] and "--to" in why[0]
    release, why = rollback_release({"a": state("A", "A")}, None)
    assert release is None and why == ["a: there is no earlier release"]
    assert rollback_release({"a": state("B", "A", "B")}, "A") == ("A", [])
    release, why = rollback_release({"a": state("B", "A", "B")}, "Z")
    assert release is None and "not there" in why[0]
