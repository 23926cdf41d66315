"""Bad input found before anything runs (exit 2, naming the file and key or argument): seconds
that are not finite or absurdly large, a ``--pipeline`` that is a path, a firewall address with an
IPv6 zone id, and env-file values no command could be given (a NUL, too long, a reserved name)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deploylib import command, run, verify
from deploylib.config import Environment, load_environment
from deploylib.errors import ConfigError
from tests.conftest import BASIC_TOML, Project

BASE = """\
app = "demo"
deploy_to = "/srv/demo"

[environments.prod]
hosts = ["deploy@203.0.113.5"]
"""


def load(tmp_path: Path, toml: str) -> Environment:
    (tmp_path / "deploy.toml").write_text(toml)
    return load_environment(tmp_path / "deploy.toml", "prod", environ={})


def refused(tmp_path: Path, toml: str) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, toml)
    assert error.value.exit_code == 2
    return error.value


def assert_untouched(project: Project, result_stderr: str) -> None:
    assert "Traceback" not in result_stderr
    assert not project.target.exists()


# ---------------------------------------------------------------------------- seconds

#: (where the setting goes, its name, its upper bound): ``top`` is the top level, ``env`` the
#: environment's table, the others ``[environments.prod.<table>]``
SECONDS = [
    ("top", "command_timeout", 86400),
    ("top", "step_timeout", 86400),
    ("env", "command_timeout", 86400),
    ("env", "step_timeout", 86400),
    ("ssh", "connect_timeout", 3600),
    ("ssh", "channel_timeout", 3600),
    ("ssh", "alive_interval", 3600),
    ("strategy", "drain", 3600),
    ("strategy", "pause", 3600),
    ("strategy", "bake", 86400),
    ("strategy", "wait", 3600),
    ("swarm", "delay", 86400),
    ("swarm", "monitor", 3600),
    ("swarm", "stop_grace_period", 86400),
    ("swarm", "timeout", 86400),
]


def with_setting(where: str, name: str, value: str) -> tuple[str, str]:
    """deploy.toml with ``name = value`` put ``where``, and the key an error names."""
    if where == "top":
        return f"{name} = {value}\n" + BASE, name
    if where == "env":
        return BASE + f"{name} = {value}\n", f"environments.prod.{name}"
    return (
        BASE + f"[environments.prod.{where}]\n{name} = {value}\n",
        f"environments.prod.{where}.{name}",
    )


def ids(cases: list[tuple[str, str, int]]) -> list[str]:
    return [f"{where}.{name}" for where, name, _ in cases]


@pytest.mark.parametrize("value", ["inf", "+inf", "-inf", "nan", "-nan"])
@pytest.mark.parametrize(("where", "name", "bound"), SECONDS, ids=ids(SECONDS))
def test_seconds_that_are_not_finite_are_refused_naming_the_key(
    tmp_path: Path, where: str, name: str, bound: int, value: str
) -> None:
    toml, key = with_setting(where, name, value)
    error = refused(tmp_path, toml)
    assert error.file == str(tmp_path / "deploy.toml")
    assert error.key == key, error
    assert "finite" in error.message, error


@pytest.mark.parametrize(("where", "name", "bound"), SECONDS, ids=ids(SECONDS))
def test_seconds_above_their_bound_are_refused_naming_the_key(
    tmp_path: Path, where: str, name: str, bound: int
) -> None:
    for value in (f"{bound + 1}", f"{bound}.5", "1e300"):
        toml, key = with_setting(where, name, value)
        error = refused(tmp_path, toml)
        assert error.key == key, error
        assert f"less than or equal to {bound}" in error.message, error


def test_every_bound_itself_is_taken(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        "command_timeout = 86400\nstep_timeout = 86400\n"
        + BASE
        + "[environments.prod.ssh]\nconnect_timeout = 3600\nchannel_timeout = 3600.0\n"
        + "alive_interval = 3600\n"
        + '[environments.prod.strategy]\nkind = "canary"\nbake = 86400\nwait = 3600\n'
        + "pause = 3600\ndrain = 3600\n",
    )
    assert env.command_timeout == env.step_timeout == 86400.0
    assert env.ssh.connect_timeout == env.ssh.channel_timeout == env.ssh.alive_interval == 3600
    assert (env.strategy.bake, env.strategy.wait, env.strategy.pause) == (86400, 3600, 3600)


@pytest.mark.parametrize("value", ["inf", "1e300", "nan"])
def test_an_endless_command_timeout_fails_check_with_exit_2(project: Project, value: str) -> None:
    project.write("deploy.toml", f"command_timeout = {value}\n" + BASIC_TOML)
    result = project.cli("check", "--env", "dev", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "deploy.toml: command_timeout:" in result.stderr
    assert_untouched(project, result.stderr)


def test_an_endless_connect_timeout_fails_check_at_once_with_exit_2(project: Project) -> None:
    # 192.0.2.1 (TEST-NET-1) is never reached: with connect_timeout = inf check used to hang
    project.write(
        "deploy.toml",
        BASIC_TOML.replace(
            'hosts = ["local"]\ndeploy_to = "target"',
            'hosts = ["deploy@192.0.2.1"]\ndeploy_to = "/srv/demo"',
        )
        + "[environments.dev.ssh]\nconnect_timeout = inf\n",
    )
    result = project.cli("check", "--env", "dev", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "environments.dev.ssh.connect_timeout" in result.stderr
    assert "finite" in result.stderr
    assert_untouched(project, result.stderr)


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("deploy", "--env", "dev", "--lock-wait", "inf"), "--lock-wait"),
        (("deploy", "--env", "dev", "--lock-wait", "nan"), "--lock-wait"),
        (("exec", "--env", "dev", "--timeout", "inf", "--command", "true"), "--timeout"),
        (("exec", "--env", "dev", "--timeout", "nan", "--command", "true"), "--timeout"),
    ],
)
def test_the_command_lines_seconds_refuse_inf_and_nan(
    project: Project, args: tuple[str, ...], key: str
) -> None:
    result = project.cli(*args, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert key in result.stderr
    assert_untouched(project, result.stderr)


# ---------------------------------------------------------------------------- --pipeline

EVIL_PIPELINE = """\
from collections.abc import Callable
from pathlib import Path
Path({marker!r}).write_text("ran")
from deploylib import Pipeline, build, push, switch
pipeline = Pipeline(build("tar -czf {{artifact}} -C app ."), push(), switch())
"""

TASKS = [
    ("deploy", "--env", "dev", "--dry-run"),
    ("deploy", "--env", "dev"),
    ("check", "--env", "dev"),
    ("setup", "--env", "dev", "--dry-run"),
]


@pytest.mark.parametrize("task", TASKS, ids=[" ".join(t) for t in TASKS])
@pytest.mark.parametrize("form", ["relative", "absolute", "inside"])
def test_a_pipeline_option_that_is_a_path_is_refused_before_anything_is_imported(
    project: Project, tmp_path: Path, task: tuple[str, ...], form: str
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(EVIL_PIPELINE.format(marker=str(marker)))
    project.write("pipelines/sub/web.py", EVIL_PIPELINE.format(marker=str(marker)))
    # the project is tmp_path/proj: pipelines/../../evil is tmp_path/evil
    name = {"relative": "../../evil", "absolute": str(tmp_path / "evil"), "inside": "sub/web"}
    before = sorted(p.relative_to(project.root) for p in project.root.rglob("*"))

    result = project.cli(*task, "--pipeline", name[form], timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "--pipeline" in result.stderr and "pipelines/NAME.py" in result.stderr
    assert not marker.exists()
    assert_untouched(project, result.stderr)
    assert sorted(p.relative_to(project.root) for p in project.root.rglob("*")) == before


@pytest.mark.parametrize("name", ["", "web\n", "web.py", ".hidden", "-web", "we b", "a/b"])
def test_pipeline_names_outside_the_pattern_are_refused(project: Project, name: str) -> None:
    result = project.cli("check", "--env", "dev", "--pipeline", name, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--pipeline" in result.stderr
    assert_untouched(project, result.stderr)


def test_a_pipeline_named_by_the_pattern_still_runs(project: Project) -> None:
    project.write("pipelines/Other_one-2.py", (project.root / "pipelines/web.py").read_text())
    result = project.cli("check", "--env", "dev", "--pipeline", "Other_one-2", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_library_refuses_a_pipeline_path_too(project: Project, tmp_path: Path) -> None:
    from deploylib import actions
    from deploylib.pipeline import load_pipeline

    marker = tmp_path / "pwned"
    (tmp_path / "evil.py").write_text(EVIL_PIPELINE.format(marker=str(marker)))
    with pytest.raises(ConfigError) as error:
        actions.load(project.root / "deploy.toml", "dev", pipeline="../../evil")
    assert error.value.key == "pipeline"
    with pytest.raises(ConfigError):
        load_pipeline(project.root, str(tmp_path / "evil"))
    assert not marker.exists()


# ---------------------------------------------------------------------------- firewall from

ZONED = ["fe80::1%eth0", "fe80::1%1", "fe80::1%a\\nb", "fe80::1%x;accept", "ff02::1%lo"]


@pytest.mark.parametrize("address", ZONED)
def test_a_firewall_address_with_a_zone_id_is_refused(tmp_path: Path, address: str) -> None:
    toml = BASE + f'[environments.prod.firewall]\nallow = [{{ port = 80, from = "{address}" }}]\n'
    error = refused(tmp_path, toml)
    assert error.key == "environments.prod.firewall.allow.0.from", error
    assert "zone" in error.message, error
    assert "\n" not in str(error)


def test_a_firewall_address_with_a_zone_id_exits_2(project: Project) -> None:
    project.write(
        "deploy.toml",
        BASIC_TOML
        + '[environments.dev.firewall]\nallow = [{ port = 80, from = "fe80::1%eth0\\nx" }]\n',
    )
    result = project.cli("setup", "--env", "dev", "--dry-run", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "environments.dev.firewall.allow.0.from" in result.stderr
    assert_untouched(project, result.stderr)


@pytest.mark.parametrize(
    ("address", "plain"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.0.0.1", "10.0.0.1/32"),
        ("fe80::1", "fe80::1/128"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("::ffff:10.0.0.1", "::ffff:a00:1/128"),
    ],
)
def test_plain_addresses_and_networks_are_still_taken(
    tmp_path: Path, address: str, plain: str
) -> None:
    toml = BASE + f'[environments.prod.firewall]\nallow = [{{ port = 80, from = "{address}" }}]\n'
    env = load(tmp_path, toml)
    assert env.firewall is not None
    rule = env.firewall.allow[0]
    assert not isinstance(rule, int) and rule.source == plain


# ---------------------------------------------------------------------------- env files

SECRET = "s3cr3t-value"


def refused_env(tmp_path: Path, content: bytes, file: str = ".env.prod") -> ConfigError:
    (tmp_path / file).write_bytes(content)
    (tmp_path / "deploy.toml").write_text(BASE)
    with pytest.raises(ConfigError) as error:
        load_environment(tmp_path / "deploy.toml", "prod", environ={})
    assert error.value.exit_code == 2
    assert error.value.file == str(tmp_path / file)
    assert SECRET not in str(error.value)
    return error.value


NUL_VALUES = [
    b"A=1\nKEY=" + SECRET.encode() + b"\0x\n",
    b'A=1\nKEY="' + SECRET.encode() + b'\0x"\n',
    b"A=1\nKEY='" + SECRET.encode() + b"\0x'\n",
    b'A=1\nKEY="' + SECRET.encode() + b'\nsecond\0line"\n',
]


@pytest.mark.parametrize("content", NUL_VALUES, ids=["bare", "double", "single", "multi-line"])
def test_a_nul_in_an_env_value_is_refused_naming_file_line_and_variable(
    tmp_path: Path, content: bytes
) -> None:
    error = refused_env(tmp_path, content)
    assert error.key == "line 2", error
    assert "KEY" in error.message and "NUL" in error.message, error


def test_a_nul_in_an_env_value_exits_2_without_a_traceback(project: Project) -> None:
    project.write(".env", "")
    (project.root / ".env").write_bytes(b"KEY=" + SECRET.encode() + b"\0x\n")
    result = project.cli("deploy", "--env", "dev", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ".env: line 1:" in result.stderr and "KEY" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert_untouched(project, result.stderr)


LIMIT = 100_000


def test_an_env_value_of_the_limit_is_taken_and_one_byte_more_refused(tmp_path: Path) -> None:
    (tmp_path / ".env.prod").write_text("A=1\nBIG=" + "x" * LIMIT + "\n")
    env = load(tmp_path, BASE)
    big = env.variables["BIG"]
    assert len(big if isinstance(big, str) else big.reveal()) == LIMIT

    error = refused_env(tmp_path, b"A=1\nBIG=" + b"x" * (LIMIT + 1) + b"\n")
    assert error.key == "line 2" and "BIG" in error.message, error
    assert "100000 bytes" in error.message, error


def test_the_limit_counts_utf8_bytes(tmp_path: Path) -> None:
    # 50,001 two-byte characters: 100,002 bytes
    error = refused_env(tmp_path, ("A=1\nBIG=" + "é" * 50_001 + "\n").encode())
    assert "BIG" in error.message, error


def test_a_value_made_too_long_by_interpolation_is_refused(tmp_path: Path) -> None:
    half = "h" * 60_000
    error = refused_env(tmp_path, f"HALF={half}\nBOTH=${{HALF}}${{HALF}}\n".encode())
    assert error.key == "line 2" and "BOTH" in error.message, error
    assert half not in str(error)


def test_an_oversized_env_value_exits_2_before_any_command(project: Project) -> None:
    (project.root / ".env").write_text("BIG=" + "x" * 200_000 + "\n")
    result = project.cli("deploy", "--env", "dev", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ".env: line 1:" in result.stderr and "BIG" in result.stderr
    assert_untouched(project, result.stderr)


@pytest.mark.parametrize("name", ["DEPLOYLIB_NEVER_SET", "DEPLOYLIB_LOCK_TOKEN", "__dlv"])
def test_a_reserved_variable_name_is_refused_in_the_env_file(tmp_path: Path, name: str) -> None:
    error = refused_env(tmp_path, f"A=1\n{name}={SECRET}\n".encode(), file=".env")
    assert error.key == "line 2", error
    assert name in error.message or "__dl" in error.message, error


def test_a_reserved_variable_name_exits_2_blaming_the_env_file(project: Project) -> None:
    project.write(".env", f"DEPLOYLIB_NEVER_SET={SECRET}\n")
    result = project.cli("deploy", "--env", "dev", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ".env: line 1:" in result.stderr and "DEPLOYLIB_NEVER_SET" in result.stderr
    assert "pipeline" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert_untouched(project, result.stderr)


@pytest.mark.parametrize(
    "make",
    [
        lambda: run("true", timeout=float("inf")),
        lambda: run("true", timeout=1e300),
        lambda: verify(command("true"), deadline=float("inf")),
        lambda: verify(command("true"), wait=float("nan")),
        lambda: verify(command("true"), wait=float("inf")),
        lambda: verify(command("true"), attempts=10**9),
    ],
)
def test_a_steps_seconds_are_finite_and_bounded_in_the_pipeline_too(
    make: Callable[[], object],
) -> None:
    with pytest.raises(ConfigError):
        make()
