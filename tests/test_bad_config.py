"""Bad input: exit code 2, a message naming the file and key, and nothing touched."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.conftest import BASIC_PIPELINE, BASIC_TOML, Project


@dataclass
class Case:
    id: str
    files: dict[str, str | None] = field(default_factory=dict)  # None deletes the file
    args: tuple[str, ...] = ("deploy", "--env", "dev")
    expect: tuple[str, ...] = ()


def toml_with(old: str, new: str) -> str:
    assert old in BASIC_TOML
    return BASIC_TOML.replace(old, new)


UPSTREAM = 'upstream_file = "/etc/nginx/up.conf"'
SLOT_SWITCH = 'switch(start="app --port {port}", stop="pkill -f {slot}")'


def with_strategy(table: str) -> str:
    return toml_with('hosts = ["local"]', f'hosts = ["local"]\nstrategy = {{ {table} }}')


CASES = [
    Case("missing-deploy-toml", {"deploy.toml": None}, expect=("deploy.toml", "not found")),
    Case("not-toml", {"deploy.toml": "app = \n"}, expect=("deploy.toml", "not valid TOML")),
    Case(
        "unknown-top-level-key",
        {"deploy.toml": "colour = 'red'\n" + BASIC_TOML},
        expect=("deploy.toml", "colour", "unknown key"),
    ),
    Case(
        "unknown-env-key",
        {"deploy.toml": toml_with('hosts = ["local"]', 'hosts = ["local"]\nhostz = 1')},
        expect=("deploy.toml", "environments.dev.hostz", "unknown key"),
    ),
    Case(
        "wrong-type",
        {"deploy.toml": toml_with("keep_releases = 3", 'keep_releases = "three"')},
        expect=("deploy.toml", "keep_releases", "integer"),
    ),
    Case(
        "keep-zero",
        {"deploy.toml": toml_with("keep_releases = 3", "keep_releases = 0")},
        expect=("deploy.toml", "keep_releases"),
    ),
    Case(
        "bad-app-name",
        {"deploy.toml": toml_with('app = "demo"', 'app = "My App"')},
        expect=("deploy.toml", "app"),
    ),
    Case(
        "missing-app",
        {"deploy.toml": toml_with('app = "demo"\n', "")},
        expect=("deploy.toml", "app", "required"),
    ),
    Case(
        "missing-hosts",
        {"deploy.toml": toml_with('hosts = ["local"]\n', "")},
        expect=("deploy.toml", "environments.dev.hosts", "required"),
    ),
    Case(
        "empty-hosts",
        {"deploy.toml": toml_with('hosts = ["local"]', "hosts = []")},
        expect=("deploy.toml", "environments.dev.hosts"),
    ),
    Case(
        "bad-host-string",
        {"deploy.toml": toml_with('hosts = ["local"]', 'hosts = ["a@@b"]')},
        expect=("deploy.toml", "environments.dev.hosts.0"),
    ),
    Case(
        "host-port-range",
        {
            "deploy.toml": toml_with(
                'hosts = ["local"]', 'hosts = [{ address = "h1", port = 70000 }]'
            )
        },
        expect=("deploy.toml", "environments.dev.hosts.0.port"),
    ),
    Case(
        "unknown-env",
        args=("deploy", "--env", "nope"),
        expect=("deploy.toml", "environments.nope", "unknown environment"),
    ),
    Case("no-env", args=("deploy",), expect=("--env",)),
    Case(
        "missing-variable",
        {"deploy.toml": toml_with('deploy_to = "target"', 'deploy_to = "${NOPE_NOT_SET}"')},
        expect=("deploy.toml", "environments.dev.deploy_to", "NOPE_NOT_SET"),
    ),
    Case(
        "missing-env-file",
        {
            "deploy.toml": toml_with(
                'hosts = ["local"]', 'hosts = ["local"]\nenv_file = ".env.gone"'
            )
        },
        expect=(".env.gone", "environments.dev.env_file"),
    ),
    Case(
        "shared-dir-escapes",
        {"deploy.toml": toml_with('shared_dirs = ["log"]', 'shared_dirs = ["../etc"]')},
        expect=("deploy.toml", "shared_dirs", ".."),
    ),
    Case(
        "deploy-to-root",
        {"deploy.toml": toml_with('deploy_to = "target"', 'deploy_to = "/"')},
        expect=("deploy.toml", "environments.dev.deploy_to"),
    ),
    Case(
        "bad-strategy",
        {
            "deploy.toml": toml_with(
                'hosts = ["local"]', 'hosts = ["local"]\nstrategy = { kind = "yolo" }'
            )
        },
        expect=("deploy.toml", "environments.dev.strategy.kind"),
    ),
    Case(
        "bad-batch",
        {
            "deploy.toml": toml_with(
                'hosts = ["local"]',
                'hosts = ["local"]\nstrategy = { kind = "rolling", batch = "150%" }',
            )
        },
        expect=("deploy.toml", "environments.dev.strategy.batch"),
    ),
    Case(
        "blue-green-without-ports",
        {"deploy.toml": with_strategy('kind = "blue_green", upstream_file = "/etc/up.conf"')},
        expect=("deploy.toml", "environments.dev.strategy.ports", "two different ports"),
    ),
    Case(
        "blue-green-one-port-twice",
        {"deploy.toml": with_strategy(f'kind = "blue_green", ports = [81, 81], {UPSTREAM}')},
        expect=("deploy.toml", "environments.dev.strategy.ports"),
    ),
    Case(
        "blue-green-without-upstream-file",
        {"deploy.toml": with_strategy('kind = "blue_green", ports = [81, 82]')},
        expect=("deploy.toml", "environments.dev.strategy.upstream_file"),
    ),
    Case(
        "blue-green-relative-upstream-file",
        {
            "deploy.toml": with_strategy(
                'kind = "blue_green", ports = [81, 82], upstream_file = "up.conf"'
            )
        },
        expect=("deploy.toml", "environments.dev.strategy.upstream_file", "absolute"),
    ),
    Case(
        "ports-on-rolling",
        {"deploy.toml": with_strategy('kind = "rolling", ports = [81, 82]')},
        expect=("deploy.toml", "environments.dev.strategy.ports", "blue_green"),
    ),
    Case(
        "bake-on-blue-green-without-weight",
        {
            "deploy.toml": with_strategy(
                f'kind = "blue_green", ports = [81, 82], {UPSTREAM}, bake = 5'
            )
        },
        expect=("deploy.toml", "environments.dev.strategy.bake"),
    ),
    Case(
        "blue-green-with-an-in-place-switch",
        {"deploy.toml": with_strategy(f'kind = "blue_green", ports = [81, 82], {UPSTREAM}')},
        expect=("pipelines/web.py", "switch", "start="),
    ),
    Case(
        "slot-switch-without-blue-green",
        {
            "pipelines/web.py": BASIC_PIPELINE.replace(
                'switch(restart="echo {release} >> {shared_path}/restarts")', SLOT_SWITCH
            )
        },
        expect=("pipelines/web.py", "switch", "blue_green"),
    ),
    Case(
        "start-without-stop",
        {
            "deploy.toml": with_strategy(f'kind = "blue_green", ports = [81, 82], {UPSTREAM}'),
            "pipelines/web.py": BASIC_PIPELINE.replace(
                'switch(restart="echo {release} >> {shared_path}/restarts")',
                'switch(start="app --port {port}")',
            ),
        },
        expect=("pipelines/web.py", "switch", "needs both"),
    ),
    Case(
        "port-placeholder-without-slots",
        {
            "pipelines/web.py": BASIC_PIPELINE.replace(
                'run("test ! -e FAIL_PREPARE"', 'run("test {port}"'
            )
        },
        expect=("pipelines/web.py", "step run", "{port}"),
    ),
    Case(
        "missing-pipeline",
        args=("deploy", "--env", "dev", "--pipeline", "missing"),
        expect=("pipelines/missing.py", "pipeline", "not found"),
    ),
    Case(
        "pipeline-syntax-error",
        {"pipelines/web.py": "pipeline = Pipeline(\n"},
        expect=("pipelines/web.py", "pipeline", "SyntaxError"),
    ),
    Case(
        "pipeline-raises",
        {"pipelines/web.py": "import nonexistent_module_xyz\n"},
        expect=("pipelines/web.py", "ModuleNotFoundError", "line 1"),
    ),
    Case(
        "pipeline-missing-variable",
        {"pipelines/web.py": "x = 1\n"},
        expect=("pipelines/web.py", "pipeline = Pipeline"),
    ),
    Case(
        "unknown-placeholder",
        {
            "pipelines/web.py": BASIC_PIPELINE.replace(
                'run("test ! -e FAIL_PREPARE"', 'run("ls {relase}"'
            )
        },
        expect=("pipelines/web.py", "step run", "{relase}"),
    ),
    Case(
        "push-without-build",
        {"pipelines/web.py": BASIC_PIPELINE.replace('build("tar -czf {artifact} -C app ."),', "")},
        expect=("pipelines/web.py", "push", "build()"),
    ),
    Case(
        "hostile-revision",
        args=("deploy", "--env", "dev", "--revision", "x$(touch pwned)"),
        expect=("--revision",),
    ),
    Case(
        "unknown-host-selected",
        args=("deploy", "--env", "dev", "--hosts", "web9"),
        expect=("--hosts", "web9"),
    ),
    Case(
        "confirm-without-tty",
        {"deploy.toml": toml_with('hosts = ["local"]', 'hosts = ["local"]\nconfirm = true')},
        expect=("deploy.toml", "environments.dev.confirm", "--yes"),
    ),
    Case(
        "bad-rollback-target",
        args=("rollback", "--env", "dev", "--to", "../../etc"),
        expect=("--to",),
    ),
    # the line, not its text: a malformed line of an env file may be part of a secret
    Case("bad-env-file-name", {".env": "GOOD=1\nBAD-NAME=2\n"}, expect=(".env", "line 2")),
    Case(
        "pushgateway-not-http",
        {
            "deploy.toml": toml_with(
                "keep_releases = 3", 'keep_releases = 3\npushgateway = "ftp://gw"'
            )
        },
        expect=("deploy.toml", ": pushgateway:", "http(s) URL"),
    ),
    Case(
        "pushgateway-without-scheme-in-env",
        {
            "deploy.toml": toml_with(
                'hosts = ["local"]', 'hosts = ["local"]\npushgateway = "127.0.0.1:9091"'
            )
        },
        expect=("deploy.toml", "environments.dev.pushgateway", "http(s) URL"),
    ),
    Case(
        "metrics-file-a-directory",
        {"deploy.toml": toml_with("keep_releases = 3", 'keep_releases = 3\nmetrics_file = "m/"')},
        expect=("deploy.toml", "metrics_file", "must name a file"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_naming_file_and_key(project: Project, case: Case) -> None:
    for name, content in case.files.items():
        path = project.root / name
        if content is None:
            path.unlink()
        else:
            project.write(name, content)
    before = sorted(p.relative_to(project.root) for p in project.root.rglob("*"))

    result = project.cli(*case.args)

    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"
    assert "Traceback" not in message
    assert not project.target.exists()
    assert sorted(p.relative_to(project.root) for p in project.root.rglob("*")) == before
    assert not (project.root / "pwned").exists()


def test_there_are_at_least_15_distinct_bad_inputs() -> None:
    assert len({c.id for c in CASES}) >= 15


def test_metrics_file_once_refused_is_now_written(project: Project) -> None:
    """``metrics_file`` was a setting of a later version (refused with exit 2, never ignored);
    now it is taken: a relative path is the project dir's (tests/test_metrics.py has the rest)."""
    project.write(
        "deploy.toml",
        BASIC_TOML.replace("keep_releases = 3", 'keep_releases = 3\nmetrics_file = "m/x.prom"'),
    )
    (project.root / "m").mkdir()
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploylib_deploys_total" in (project.root / "m" / "x.prom").read_text()
