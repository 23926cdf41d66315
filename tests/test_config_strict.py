"""Bad input is refused whole: wrong types, trailing newlines, root-like deploy_to, overlapping
shared paths, unreadable env files (named by line, never quoted) and an unwritable --events."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from deploylib.config import Environment, load_environment
from deploylib.errors import ConfigError
from tests.conftest import BASIC_TOML, Project

BASE = """\
app = "demo"
deploy_to = "/srv/demo"

[environments.prod]
hosts = ["deploy@203.0.113.5"]
"""


def load(tmp_path: Path, toml: str, env: str = "prod") -> Environment:
    (tmp_path / "deploy.toml").write_text(toml)
    return load_environment(tmp_path / "deploy.toml", env, environ={})


def refused(tmp_path: Path, toml: str) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, toml)
    assert error.value.file == str(tmp_path / "deploy.toml")
    return error.value


# ---------------------------------------------------------------------------- strict types

WRONG_TYPES = [
    ('keep_releases = "5"', "keep_releases"),
    ('command_timeout = "30"', "command_timeout"),
    ("keep_releases = 5.0", "keep_releases"),
    ('[environments.prod.ssh]\nport = "22"', "environments.prod.ssh.port"),
    ('[environments.prod.ssh]\naccept_new = "true"', "environments.prod.ssh.accept_new"),
    ("[environments.prod.ssh]\nalive_count_max = 3.0", "environments.prod.ssh.alive_count_max"),
    ("[environments.prod.ssh]\nconnect_timeout = true", "environments.prod.ssh.connect_timeout"),
    ('[environments.prod.strategy]\nkind = "rolling"\nbatch = 2.5', "environments.prod.strategy"),
]


@pytest.mark.parametrize(("setting", "key"), WRONG_TYPES, ids=[k for _, k in WRONG_TYPES])
def test_a_wrong_toml_type_is_an_error_naming_the_key(
    tmp_path: Path, setting: str, key: str
) -> None:
    top_level = not setting.startswith("[")
    toml = setting + "\n" + BASE if top_level else BASE + setting + "\n"
    error = refused(tmp_path, toml)
    assert error.key is not None and error.key.startswith(key)


@pytest.mark.parametrize(
    "entry",
    ['{ address = "h1", port = "22" }', '{ address = "h1", roles = "web" }', "7"],
)
def test_a_wrong_type_in_a_host_entry_is_an_error(tmp_path: Path, entry: str) -> None:
    error = refused(tmp_path, BASE.replace('["deploy@203.0.113.5"]', f"[{entry}]"))
    assert error.key is not None and error.key.startswith("environments.prod.hosts.0")


def test_confirm_must_be_a_boolean(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + 'confirm = "yes"\n')
    assert error.key == "environments.prod.confirm" and "without quotes" in error.message


def test_integers_where_numbers_are_expected_and_nested_tables_still_work(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        BASE.replace(
            '["deploy@203.0.113.5"]',
            '["a@h1", { address = "h2", user = "ops", port = 2200, roles = ["web"] }]',
        )
        + "command_timeout = 30\nstep_timeout = 60\n"
        + "[environments.prod.ssh]\nconnect_timeout = 3\nalive_interval = 1\nport = 2222\n"
        + '[environments.prod.strategy]\nkind = "rolling"\nbatch = "50%"\n',
    )
    assert env.ssh.connect_timeout == 3.0 and env.ssh.port == 2222
    assert env.command_timeout == 30.0 and env.strategy.batch == "50%"
    assert [h.port for h in env.hosts] == [None, 2200]


# ---------------------------------------------------------------------------- trailing newlines

HOSTS = '["deploy@203.0.113.5"]'
TRAILING_NEWLINES = [
    (BASE.replace('"demo"', '"demo\\n"'), "app"),
    (BASE.replace(HOSTS, '["deploy@203.0.113.5\\n"]'), "environments.prod.hosts.0"),
    (BASE.replace(HOSTS, '[{ address = "h1\\n" }]'), "environments.prod.hosts.0.address"),
    (BASE.replace(HOSTS, '[{ address = "h1", user = "u\\n" }]'), "environments.prod.hosts.0.user"),
    (BASE.replace(HOSTS, '[{ address = "h1", name = "n\\n" }]'), "environments.prod.hosts.0.name"),
    (
        BASE.replace(HOSTS, '[{ address = "h1", roles = ["w\\n"] }]'),
        "environments.prod.hosts.0.roles.0",
    ),
    ('pipeline = "web\\n"\n' + BASE, "pipeline"),
    ('public_env = ["PORT\\n"]\n' + BASE, "public_env.0"),
    (BASE + '[notify]\nwebhook = "https://hooks.example/x\\n"\n', "notify.webhook"),
    (BASE + '[environments.prod.ssh]\nuser = "root\\n"\n', "environments.prod.ssh.user"),
    (
        BASE + '[environments.prod.strategy]\nkind = "rolling"\nbatch = "25%\\n"\n',
        "environments.prod.strategy.batch",
    ),
]


@pytest.mark.parametrize(("toml", "key"), TRAILING_NEWLINES, ids=[k for _, k in TRAILING_NEWLINES])
def test_a_trailing_newline_is_never_accepted(tmp_path: Path, toml: str, key: str) -> None:
    assert "\\n" in toml
    error = refused(tmp_path, toml)
    assert error.key == key, error


# ---------------------------------------------------------------------------- deploy_to


@pytest.mark.parametrize("deploy_to", ["/", "//", "///", "/./", "//.", "/../", "/srv/.."])
def test_a_deploy_to_that_is_the_root_is_refused(tmp_path: Path, deploy_to: str) -> None:
    error = refused(tmp_path, BASE.replace('"/srv/demo"', f'"{deploy_to}"'))
    assert error.key == "environments.prod.deploy_to" and "root" in error.message


def test_a_deploy_to_with_a_leading_double_slash_is_made_plain(tmp_path: Path) -> None:
    env = load(tmp_path, BASE.replace('"/srv/demo"', '"//srv//demo/"'))
    assert env.deploy_to == "/srv/demo"


@pytest.mark.parametrize("deploy_to", ["/srv/a\\rb", "/srv/\\u001b[2J", "/srv/a\\tb"])
def test_a_deploy_to_with_control_characters_is_refused(tmp_path: Path, deploy_to: str) -> None:
    refused(tmp_path, BASE.replace('"/srv/demo"', f'"{deploy_to}"'))


# ---------------------------------------------------------------------------- shared paths

OVERLAPS = [
    ('shared_dirs = ["public", "public/uploads"]', "'public/uploads'", "'public'"),
    ('shared_dirs = ["storage"]\nshared_files = ["storage/oauth.key"]', "storage/oauth.key", ""),
    ('shared_dirs = ["log", "log"]', "same path", ""),
    ('shared_dirs = ["log", "log/"]', "'log/'", "'log'"),
    ('shared_dirs = ["./log", "log"]', "same path", "'./log'"),
    ('shared_dirs = ["a/b/c"]\nshared_files = ["a"]', "contains", "'a/b/c'"),
    ('shared_files = [".env", "./.env"]', "same path", ""),
    ('shared_dirs = ["tmp//cache", "tmp/./cache/x"]', "inside", ""),
]


@pytest.mark.parametrize(("settings", "first", "second"), OVERLAPS, ids=[o[0] for o in OVERLAPS])
def test_overlapping_shared_paths_are_refused_naming_both(
    tmp_path: Path, settings: str, first: str, second: str
) -> None:
    error = refused(tmp_path, settings + "\n" + BASE)
    assert error.key in ("shared_dirs", "shared_files")
    assert "overlap" in error.message and first in error.message and second in error.message


def test_overlaps_in_an_environment_name_its_key(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + 'shared_dirs = ["public"]\nshared_files = ["public/x"]\n')
    assert error.key == "environments.prod.shared_files"


def test_siblings_with_a_common_prefix_do_not_overlap(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        'shared_dirs = ["log", "logs", "public/a", "public/ab"]\n'
        'shared_files = [".env", ".env.local", "log.txt"]\n' + BASE,
    )
    assert env.shared_dirs == ("log", "logs", "public/a", "public/ab")


def test_overlapping_shared_paths_fail_the_cli_with_exit_2_and_touch_nothing(
    project: Project,
) -> None:
    project.write("deploy.toml", BASIC_TOML.replace('["log"]', '["public", "public/uploads"]'))
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2 and "public/uploads" in result.stderr
    assert not project.target.exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [("shared_dirs", "REVISION"), ("shared_files", "REVISION"), ("shared_dirs", "IMAGE/x")],
)
def test_a_shared_path_on_deploylibs_own_release_files_is_refused(
    project: Project, key: str, value: str
) -> None:
    """REVISION is written last into each release and says it is complete: shared, it would
    never be written (and every release would look like every other)."""
    line = 'shared_dirs = ["log"]' if key == "shared_dirs" else 'shared_files = [".env"]'
    toml = BASIC_TOML.replace(line, f'{key} = ["{value}"]')
    assert toml != BASIC_TOML
    project.write("deploy.toml", toml)
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2, result.stdout + result.stderr
    assert key in result.stderr and value in result.stderr
    assert not project.target.exists()


# ---------------------------------------------------------------------------- env files

PEM_BODY = "MIIEowIBAAKCAQEAx4Ur5ZQpL0+secretbody/w=="
MALFORMED = [
    (f"A=1\nKEY=-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n", 3),
    (f'# comment\n\n\nA=1\nKEY="{PEM_BODY}\n', 5),
    (f"A=1\n\n{PEM_BODY.replace('+', '').replace('/', '').rstrip('=')}\n", 3),
    (f"A=1\n  {PEM_BODY[:20]}-x=1\n", 2),
    (f"A=1\nexport {PEM_BODY[:12]} leftover\n", 2),
]


@pytest.mark.parametrize(("content", "line"), MALFORMED)
def test_a_malformed_env_file_is_refused_by_line_without_its_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, line: int
) -> None:
    (tmp_path / ".env.prod").write_text(content)
    caplog.set_level(logging.DEBUG)

    error = refused_env(tmp_path)

    assert error.file == str(tmp_path / ".env.prod") and error.key == f"line {line}"
    assert "spans lines must be quoted" in error.message
    for text in (str(error), caplog.text):
        assert "MIIE" not in text and "secretbody" not in text and "PRIVATE" not in text


def refused_env(tmp_path: Path) -> ConfigError:
    (tmp_path / "deploy.toml").write_text(BASE)
    with pytest.raises(ConfigError) as error:
        load_environment(tmp_path / "deploy.toml", "prod", environ={})
    return error.value


def test_a_malformed_env_file_fails_the_cli_with_exit_2_and_prints_no_content(
    project: Project,
) -> None:
    project.write(".env", f"KEY=-----BEGIN KEY-----\n{PEM_BODY}\n-----END KEY-----\n")
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2
    assert ".env: line 2:" in result.stderr
    assert "MIIE" not in result.stdout + result.stderr and "END" not in result.stderr
    assert not project.target.exists()


def test_quoted_multi_line_values_comments_and_interpolation_still_load(tmp_path: Path) -> None:
    (tmp_path / ".env.prod").write_text(
        "# a comment\n\nexport USER_NAME=app # trailing comment\n"
        f'KEY="-----BEGIN KEY-----\n{PEM_BODY}\n-----END KEY-----"\n'
        "URL=postgres://${USER_NAME}@db\nEMPTY=\n"
    )
    (tmp_path / "deploy.toml").write_text(BASE)
    env = load_environment(tmp_path / "deploy.toml", "prod", environ={})
    values = {k: v if isinstance(v, str) else v.reveal() for k, v in env.variables.items()}
    assert values == {
        "USER_NAME": "app",
        "KEY": f"-----BEGIN KEY-----\n{PEM_BODY}\n-----END KEY-----",
        "URL": "postgres://app@db",
        "EMPTY": "",
    }


# ---------------------------------------------------------------------------- --events


@pytest.mark.parametrize("task", ["deploy", "rollback"])
def test_an_events_file_that_cannot_be_opened_is_exit_2_before_any_host(
    project: Project, task: str
) -> None:
    result = project.cli(task, "--env", "dev", "--events", "/nonexistent/dir/x.jsonl")
    assert result.returncode == 2, result.stderr
    assert "--events" in result.stderr and "/nonexistent/dir/x.jsonl" in result.stderr
    assert "Traceback" not in result.stderr
    assert not project.target.exists()


def test_releases_lists_a_failed_deploy_and_exits_0(project: Project) -> None:
    project.write("app/FAIL_PREPARE", "")
    assert project.cli("deploy", "--env", "dev").returncode == 1

    result = project.cli("releases", "--env", "dev")

    assert result.returncode == 0, result.stderr
    assert "failed" in result.stdout and "Traceback" not in result.stderr
