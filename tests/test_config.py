"""deploy.toml and env files that are right: overrides, interpolation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploylib import Secret
from deploylib.config import load_environment
from deploylib.errors import ConfigError
from deploylib.hosts import Host

FULL = """\
app = "shop"
deploy_to = "/srv/shop"
keep_releases = 4
shared_dirs = ["log", "tmp/cache"]
shared_files = [".env"]

[environments.dev]
hosts = ["local"]
deploy_to = "build/dev"

[environments.prod]
hosts = [
  "deploy@203.0.113.5",
  "web2:2222",
  { address = "db.example", user = "ops", port = 2200, roles = ["web", "db"], name = "db1" },
]
deploy_to = "/srv/${APP_DIR}"
keep_releases = 2
env_file = "secrets/prod.env"
confirm = true
public_env = ["PORT", "APP_DIR"]
[environments.prod.ssh]
key_file = "~/.ssh/id_ed25519"
alive_interval = 5
alive_count_max = 3
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "deploy.toml").write_text(FULL)
    (tmp_path / ".env").write_text("PORT=8000\nDATABASE_URL=postgres://dev\nAPP_DIR=shop-dev\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "prod.env").write_text(
        "DATABASE_URL=postgres://prod-secret\nAPP_DIR=shop-prod\n"
    )
    return tmp_path


def test_top_level_settings_and_relative_deploy_to(project: Path) -> None:
    env = load_environment(project / "deploy.toml", "dev", environ={})
    assert env.app == "shop" and env.name == "dev"
    assert env.deploy_to == str(project / "build" / "dev")
    assert env.keep_releases == 4
    assert env.shared_dirs == ("log", "tmp/cache")
    assert env.hosts == (Host("local", "local"),)
    assert env.pipeline == "web"
    assert env.confirm is False


def test_environment_overrides_and_env_file_on_top_of_dotenv(project: Path) -> None:
    env = load_environment(project / "deploy.toml", "prod", environ={})
    assert env.deploy_to == "/srv/shop-prod"  # ${APP_DIR} from the env_file, over .env
    assert env.keep_releases == 2
    assert env.confirm is True
    assert env.ssh.key_file == "~/.ssh/id_ed25519"
    assert env.hosts == (
        Host("203.0.113.5", "203.0.113.5", user="deploy"),
        Host("web2", "web2", port=2222),
        Host("db1", "db.example", user="ops", port=2200, roles=("web", "db")),
    )
    assert env.variables["PORT"] == "8000"  # public
    assert env.variables["DATABASE_URL"] == Secret("postgres://prod-secret")
    assert str(env.variables["DATABASE_URL"]) == "***"
    assert env.redactor.redact("url=postgres://prod-secret") == "url=***"


def test_process_environment_wins_over_env_files(project: Path) -> None:
    env = load_environment(
        project / "deploy.toml",
        "prod",
        environ={"DATABASE_URL": "postgres://from-ci", "APP_DIR": "ci"},
    )
    assert env.variables["DATABASE_URL"] == Secret("postgres://from-ci")
    assert env.deploy_to == "/srv/ci"
    # a variable only in the process environment is not sent to targets
    assert (
        "HOME"
        not in load_environment(project / "deploy.toml", "dev", environ={"HOME": "/root"}).variables
    )


def test_interpolation_default_and_escape(project: Path) -> None:
    (project / "deploy.toml").write_text(
        'app = "a"\ndeploy_to = "/srv/${NOPE:-fallback}/$$literal"\n'
        '[environments.dev]\nhosts = ["h1"]\n'
    )
    env = load_environment(project / "deploy.toml", "dev", environ={})
    assert env.deploy_to == "/srv/fallback/$literal"


def test_deploy_to_with_spaces_is_kept(project: Path) -> None:
    (project / "deploy.toml").write_text(
        'app = "a"\n[environments.dev]\nhosts = ["h1"]\ndeploy_to = "/srv/my app/"\n'
    )
    assert load_environment(project / "deploy.toml", "dev", environ={}).deploy_to == "/srv/my app"


def test_ssh_hosts_need_an_absolute_deploy_to(project: Path) -> None:
    (project / "deploy.toml").write_text(
        'app = "a"\n[environments.p]\nhosts = ["h1"]\ndeploy_to = "rel"\n'
    )
    with pytest.raises(ConfigError) as error:
        load_environment(project / "deploy.toml", "p", environ={})
    assert error.value.key == "environments.p.deploy_to"


def test_duplicate_hosts_are_refused(project: Path) -> None:
    (project / "deploy.toml").write_text(
        'app = "a"\ndeploy_to = "/x"\n[environments.p]\nhosts = ["h1", "u@h1"]\n'
    )
    with pytest.raises(ConfigError, match="twice"):
        load_environment(project / "deploy.toml", "p", environ={})


def test_multiline_secret_is_redacted_line_by_line(project: Path) -> None:
    (project / ".env").write_text('KEY="-----BEGIN KEY-----\nabcdefghij\n-----END KEY-----"\n')
    env = load_environment(project / "deploy.toml", "dev", environ={})
    assert "abcdefghij" not in env.redactor.redact("line: abcdefghij")


@pytest.mark.parametrize(
    "setting",
    [
        'deploy_to = "/srv/${DATABASE_URL}"',
        'hosts = ["${DATABASE_URL}"]',
        'shared_dirs = ["${DATABASE_URL}"]',
    ],
)
def test_a_secret_is_never_interpolated_where_it_reaches_command_lines(
    project: Path, setting: str
) -> None:
    """Values from the env files are secrets: outside the webhook URL, interpolating one would
    put it on command lines and into messages (exit 2, naming the variable, never its value)."""
    lines = ['app = "shop"', 'deploy_to = "/srv/shop"', "[environments.prod]", 'hosts = ["h1"]']
    lines.append('env_file = "secrets/prod.env"')
    key = setting.split(" ")[0]
    lines = [line for line in lines if not line.startswith(key)] + [setting]
    (project / "deploy.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"\$\{DATABASE_URL\} is a secret") as refused:
        load_environment(project / "deploy.toml", "prod", environ={})
    assert "prod-secret" not in str(refused.value)


def test_a_secret_may_be_the_webhook_url(project: Path) -> None:
    (project / "secrets" / "prod.env").write_text(
        "APP_DIR=shop-prod\nHOOK=https://hooks.example/T0KEN-s3cret\n"
    )
    (project / "deploy.toml").write_text(
        FULL + '\n[environments.prod.notify]\nwebhook = "${HOOK}"\n'
    )
    env = load_environment(project / "deploy.toml", "prod", environ={})
    assert env.notify.webhook == "https://hooks.example/T0KEN-s3cret"
    assert "T0KEN" not in env.redactor.redact(f"POST {env.notify.webhook} failed")
