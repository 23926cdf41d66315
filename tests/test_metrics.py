"""Metrics: ``metrics_file`` (node_exporter's textfile) and ``pushgateway``.

Real deploys and rollbacks into temp dirs write the file; every value is read back with
prometheus-client's own parser. The file is replaced whole under a lock: a reader never sees
part of it, and writers in threads and in processes lose no count. The Pushgateway's side is
tested here against a stand-in on 127.0.0.1 (garbage, refusals, silence, what is PUT) and, in
tests/test_metrics_pushgateway.py, against the real one scraped by a real Prometheus.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploylib import (
    DeployFailed,
    FleetInconsistent,
    LockHeld,
    Pipeline,
    build,
    http,
    push,
    switch,
    verify,
)
from deploylib.commands import Operation, Probe, Result
from deploylib.config import StrategySettings, load_environment
from deploylib.errors import ConfigError
from deploylib.hosts import Host
from deploylib.metrics import gateway_api, pushgateway, series, textfile
from deploylib.metrics.series import LiveRelease, RunRecord
from deploylib.testing import FIXED_TIME, FakeFleet, deploy_with_fakes, environment
from tests.conftest import REPO, Project
from tests.testbed.pushgateway import FakeGateway
from tests.testbed.slowhttp import SilentListener

Values = dict[tuple[str, frozenset[tuple[str, str]]], float]


def values(path: Path) -> Values:
    """Every sample of the file, by name and labels, read by prometheus-client's parser."""
    return read(path.read_text())


def read(text: str) -> Values:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Values, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def info(samples: Values, app: str = "demo", env: str = "dev") -> list[dict[str, str]]:
    """The ``deploylib_release_info`` series of an app and environment, as label dicts."""
    found = [
        dict(labels)
        for (name, labels), v in samples.items()
        if name == "deploylib_release_info" and dict(labels)["env"] == env
    ]
    assert all(d["app"] == app for d in found)
    return found


@pytest.fixture
def metered(project: Project) -> Iterator[Project]:
    """The basic project, with ``metrics_file = "metrics/deploylib.prom"`` and its directory."""
    text = (project.root / "deploy.toml").read_text()
    project.write(
        "deploy.toml",
        text.replace(
            "keep_releases = 3", 'keep_releases = 3\nmetrics_file = "metrics/deploylib.prom"'
        ),
    )
    (project.root / "metrics").mkdir()
    yield project


def prom(project: Project) -> Path:
    return project.root / "metrics" / "deploylib.prom"


# ---------------------------------------------------------------------------- config


def test_metrics_file_is_relative_to_the_project_dir_and_pushgateway_is_kept(
    project: Project,
) -> None:
    project.write(
        "deploy.toml",
        'app = "demo"\ndeploy_to = "/srv/demo"\nmetrics_file = "m/d.prom"\n'
        '[environments.dev]\nhosts = ["local"]\npushgateway = "http://127.0.0.1:9091/"\n'
        '[environments.prod]\nhosts = ["local"]\nmetrics_file = "/var/lib/ne/d.prom"\n',
    )
    dev = load_environment(project.root / "deploy.toml", "dev")
    assert dev.metrics_file == str(project.root / "m" / "d.prom")
    assert dev.pushgateway == "http://127.0.0.1:9091/"
    prod = load_environment(project.root / "deploy.toml", "prod")
    assert prod.metrics_file == "/var/lib/ne/d.prom" and prod.pushgateway is None


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:9091", "ftp://gw", "http://", "http://gw:port", "http://gw/?a=1", "http://gw/#x"],
)
def test_a_pushgateway_that_is_not_an_http_url_is_refused_naming_the_key(
    project: Project, url: str
) -> None:
    project.write(
        "deploy.toml",
        'app = "demo"\ndeploy_to = "/srv/demo"\n'
        f'[environments.dev]\nhosts = ["local"]\npushgateway = "{url}"\n',
    )
    with pytest.raises(ConfigError) as raised:
        load_environment(project.root / "deploy.toml", "dev")
    assert raised.value.key == "environments.dev.pushgateway"
    assert raised.value.exit_code == 2


# ---------------------------------------------------------------------------- the textfile


def test_a_deploy_writes_every_series(metered: Project) -> None:
    outcome, _ = metered.deploy()
    path = prom(metered)
    samples = values(path)
    assert value(samples, "deploylib_deploys_total", app="demo", env="dev", outcome="success") == 1
    assert value(samples, "deploylib_deploy_duration_seconds_count", app="demo", env="dev") == 1
    bucket = {"app": "demo", "env": "dev", "le": "+Inf"}
    assert value(samples, "deploylib_deploy_duration_seconds_bucket", **bucket) == 1
    assert info(samples) == [
        {"app": "demo", "env": "dev", "release": outcome.release, "revision": "abc1234"}
    ]
    last = value(samples, "deploylib_last_success_timestamp_seconds", app="demo", env="dev")
    assert last is not None and last > 1.7e9  # the run's clock: 2026-03-01 and a few minutes
    # every family has its HELP and TYPE; the collector reads the file as another user
    text = path.read_text()
    for name in ("deploys_total", "rollbacks_total", "release_info", "deploy_duration_seconds"):
        assert f"# TYPE deploylib_{name} " in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "_created" not in text  # counts outlive the process: no creation time
    # nothing else was left in the directory but the lock file
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "deploylib.prom",
        "deploylib.prom.lock",
    ]


def test_counters_accumulate_across_runs_and_every_outcome_counts(metered: Project) -> None:
    first, _ = metered.deploy(revision="rev1")
    second, _ = metered.deploy(revision="rev2")
    # failed before any host switched: nothing changed
    (metered.root / "app" / "FAIL_PREPARE").touch()
    with pytest.raises(DeployFailed):
        metered.deploy(revision="rev3")
    (metered.root / "app" / "FAIL_PREPARE").unlink()
    # failed after the switch: put back
    (metered.root / "app" / "BROKEN").touch()
    with pytest.raises(DeployFailed):
        metered.deploy(revision="rev4")
    (metered.root / "app" / "BROKEN").unlink()
    samples = values(prom(metered))
    assert info(samples) == [
        {"app": "demo", "env": "dev", "release": second.release, "revision": "rev2"}
    ]
    # another deploy holds the lock
    lock = metered.hold_lock({"user": "ann", "host": "elsewhere", "pid": 1})
    with pytest.raises(LockHeld):
        metered.deploy(revision="rev5")
    shutil.rmtree(lock)
    metered.rollback()

    samples = values(prom(metered))
    counts = {
        dict(labels)["outcome"]: v
        for (name, labels), v in samples.items()
        if name == "deploylib_deploys_total"
    }
    assert counts == {"success": 2, "failed": 1, "rolled_back": 1, "locked": 1}
    rollbacks = value(
        samples, "deploylib_rollbacks_total", app="demo", env="dev", outcome="success"
    )
    assert rollbacks == 1
    # every deploy that ran is in the histogram; the one locked out never ran
    assert value(samples, "deploylib_deploy_duration_seconds_count", app="demo", env="dev") == 4
    # the rollback put the first release back: it is the live one
    assert info(samples) == [
        {"app": "demo", "env": "dev", "release": first.release, "revision": "rev1"}
    ]


def test_a_dry_run_writes_nothing(metered: Project) -> None:
    result = metered.cli("deploy", "--env", "dev", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert list((metered.root / "metrics").iterdir()) == []


def test_a_missing_directory_is_a_warning_and_the_deploy_succeeds(metered: Project) -> None:
    (metered.root / "metrics").rmdir()
    result = metered.cli("deploy", "--env", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join((result.stdout + result.stderr).split())
    assert "metrics_file" in out and "does not exist" in out
    assert not (metered.root / "metrics").exists()  # never made: a typo would write nowhere read


def test_a_file_that_does_not_read_starts_over_with_a_warning(metered: Project) -> None:
    prom(metered).write_text("this is not {the text format\n")
    _, reporter = metered.deploy()
    warnings = [e.message for e in reporter.events if e.kind == "warning"]
    assert any("start over" in w for w in warnings), warnings
    samples = values(prom(metered))
    assert value(samples, "deploylib_deploys_total", app="demo", env="dev", outcome="success") == 1


def test_warnings_come_after_the_locks_are_released_and_before_the_outcome(
    metered: Project,
) -> None:
    (metered.root / "metrics").rmdir()
    _, reporter = metered.deploy()
    kinds = [e.kind for e in reporter.events]
    assert kinds[-2:] == ["warning", "deploy.ok"]
    assert not (metered.target / ".deploylib" / "lock").exists()


def run_record(app: str = "demo", env: str = "dev", **changes: object) -> RunRecord:
    fields: dict[str, object] = {
        "app": app,
        "env": env,
        "kind": "deploy",
        "outcome": "success",
        "seconds": 12.5,
        "finished_at": 1_800_000_000.0,
        "live": LiveRelease("20260301T000000Z-abc1234", "abc1234"),
    }
    fields.update(changes)
    return RunRecord(**fields)  # type: ignore[arg-type]


def test_the_file_is_never_seen_half_written(tmp_path: Path) -> None:
    path = tmp_path / "deploylib.prom"
    stop = threading.Event()
    seen: list[float] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            try:
                samples = read(text)
            except ValueError as exc:
                problems.append(f"{exc}: {text!r}")
                continue
            count = value(
                samples, "deploylib_deploys_total", app="demo", env="dev", outcome="success"
            )
            last = value(samples, "deploylib_last_success_timestamp_seconds", app="demo", env="dev")
            if count is None or last is None or not text.endswith("\n"):
                problems.append(f"incomplete: {text!r}")
            else:
                seen.append(count)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for n in range(50):
            assert textfile.update(path, run_record(finished_at=float(n))) == []
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not problems, problems[:3]
    assert seen == sorted(seen) and seen  # counts only ever go up, as read
    final = values(path)
    assert value(final, "deploylib_deploys_total", app="demo", env="dev", outcome="success") == 50
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["deploylib.prom", "deploylib.prom.lock"]  # no temporary file left


def test_writers_in_threads_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "shared.prom"
    envs = [f"env{i}" for i in range(6)]

    def write(env: str) -> None:
        for _ in range(10):
            assert textfile.update(path, run_record(env=env)) == []

    threads = [threading.Thread(target=write, args=(env,)) for env in envs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    samples = values(path)
    for env in envs:
        assert (
            value(samples, "deploylib_deploys_total", app="demo", env=env, outcome="success") == 10
        )
        assert value(samples, "deploylib_deploy_duration_seconds_count", app="demo", env=env) == 10


WRITER = """\
import sys
from pathlib import Path
from deploylib.metrics import textfile
from deploylib.metrics.series import RunRecord
path, env, times = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for n in range(times):
    record = RunRecord("demo", env, "rollback", "failed", 1.0, float(n))
    assert textfile.update(path, record) == [], env
"""


def test_writers_in_processes_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "shared.prom"
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"e{i}", "10"],
            env=environ,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    samples = values(path)
    for i in range(4):
        labels = {"app": "demo", "env": f"e{i}", "outcome": "failed"}
        assert value(samples, "deploylib_rollbacks_total", **labels) == 10


def test_a_writer_that_waits_too_long_for_the_lock_warns(tmp_path: Path) -> None:
    path = tmp_path / "d.prom"
    with (tmp_path / "d.prom.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        warnings = textfile.update(path, run_record(), lock_wait=0.2)
    assert len(warnings) == 1 and "held its lock" in warnings[0]
    assert not path.exists()


HOSTILE_APP = 'a"b\\c\nd{e}=,'
HOSTILE_ENV = "x/y z/../é\t"


def test_hostile_label_values_are_escaped_and_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "d.prom"
    live = LiveRelease('rel"\n}', "rev\\/@:+")
    record = run_record(app=HOSTILE_APP, env=HOSTILE_ENV, live=live)
    assert textfile.update(path, record) == []
    assert textfile.update(path, record) == []  # read back by deploylib, added to
    samples = values(path)
    key = {"app": HOSTILE_APP, "env": HOSTILE_ENV}
    assert value(samples, "deploylib_deploys_total", **key, outcome="success") == 2
    assert (
        value(
            samples, "deploylib_release_info", **key, release=live.release, revision=live.revision
        )
        == 1
    )
    # one series per line: a newline in a value never starts a line of its own
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert all(line.startswith("deploylib_") for line in lines)


def test_another_environments_series_are_kept_and_release_info_is_per_environment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.prom"
    textfile.update(path, run_record(env="staging", live=LiveRelease("r1", "v1")))
    textfile.update(path, run_record(env="prod", live=LiveRelease("r2", "v2")))
    textfile.update(path, run_record(env="prod", live=LiveRelease("r3", "v3")))
    samples = values(path)
    assert info(samples, env="staging") == [
        {"app": "demo", "env": "staging", "release": "r1", "revision": "v1"}
    ]
    assert info(samples, env="prod") == [
        {"app": "demo", "env": "prod", "release": "r3", "revision": "v3"}
    ]


# ---------------------------------------------------------------------------- split fleets

HOSTS = ["h1", "h2", "h3"]
PIPELINE = Pipeline(
    build("make artifact {artifact}"),
    push(),
    switch(restart="restart"),
    verify(http("http://{host_address}/health"), attempts=1, wait=0),
)


def fake_deploy(path: Path, failing: set[str], max_fail: int | str) -> object:
    fleet = FakeFleet()
    for name in HOSTS:

        def answer(op: Operation, name: str = name) -> Result | None:
            if isinstance(op, Probe) and name in failing:
                return Result(1, stderr="unhealthy")
            return None

        fleet[name].respond(answer)
    strategy = StrategySettings(kind="rolling", batch=1, max_fail=max_fail)
    env = environment(hosts=[Host(h, h) for h in HOSTS], strategy=strategy, metrics_file=str(path))
    outcome, _ = deploy_with_fakes(env, PIPELINE, fleet)
    return outcome


def test_a_split_fleet_counts_as_split_and_has_no_live_release(tmp_path: Path) -> None:
    path = tmp_path / "d.prom"
    fake_deploy(path, set(), 0)
    assert len(info(values(path), app="app", env="test")) == 1
    assert isinstance(fake_deploy(path, {"h2"}, 1), FleetInconsistent)
    samples = values(path)
    assert value(samples, "deploylib_deploys_total", app="app", env="test", outcome="split") == 1
    assert info(samples, app="app", env="test") == []  # its hosts run different releases
    last = value(samples, "deploylib_last_success_timestamp_seconds", app="app", env="test")
    assert last == FIXED_TIME.timestamp()  # the first deploy's


def test_every_host_left_behind_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "d.prom"
    assert isinstance(fake_deploy(path, set(HOSTS), "100%"), DeployFailed)
    samples = values(path)
    labels = {"app": "app", "env": "test", "outcome": "rolled_back"}
    assert value(samples, "deploylib_deploys_total", **labels) == 1


# ---------------------------------------------------------------------------- the Pushgateway


def group_answer(app: str, env: str, success: str) -> str:
    """What ``GET /api/v1/metrics`` says of a gateway holding one group of deploylib's."""
    labels = {"job": "deploylib", "app": app, "env": env}
    other = {"job": "other", "instance": "x"}
    return json.dumps(
        {
            "status": "success",
            "data": [
                {"labels": other, "x_total": {"type": "COUNTER", "metrics": []}},
                {
                    "labels": labels,
                    "last_push_successful": True,
                    "deploylib_deploys_total": {
                        "type": "COUNTER",
                        "help": "",
                        "metrics": [
                            {
                                "labels": {**labels, "instance": "", "outcome": "success"},
                                "value": success,
                            }
                        ],
                    },
                    "push_time_seconds": {
                        "type": "GAUGE",
                        "metrics": [{"labels": {**labels, "instance": ""}, "value": "1.7e+09"}],
                    },
                },
            ],
        }
    )


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway() as fake:
        yield fake


def test_the_group_is_read_back_added_to_and_put_whole(gateway: FakeGateway) -> None:
    gateway.api = (200, group_answer("demo", "dev", "41"))
    assert pushgateway.push(gateway.url + "/", run_record()) == []
    assert gateway.methods() == ["GET", "PUT"]
    assert gateway.requests[0][1] == "/api/v1/metrics"
    _, path, body = gateway.requests[1]
    assert path == gateway_api.group_path("demo", "dev")
    assert path.startswith("/metrics/job@base64/") and "/app@base64/" in path
    samples = read(body.decode())
    assert value(samples, "deploylib_deploys_total", app="demo", env="dev", outcome="success") == 42
    assert gateway.headers[1]["Content-Type"].startswith("text/plain; version=0.0.4")


def test_a_new_group_starts_at_one_and_hostile_values_are_base64_in_the_path(
    gateway: FakeGateway,
) -> None:
    assert pushgateway.push(gateway.url, run_record(app=HOSTILE_APP, env=HOSTILE_ENV)) == []
    _, path, body = gateway.requests[1]
    encoded = path.split("/")[-1]
    assert base64.urlsafe_b64decode(encoded).decode() == HOSTILE_ENV
    samples = read(body.decode())
    key = {"app": HOSTILE_APP, "env": HOSTILE_ENV, "outcome": "success"}
    assert value(samples, "deploylib_deploys_total", **key) == 1


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((500, "internal error"), "status 500"),
        ((200, "<html>not json</html>"), "not JSON"),
        ((200, json.dumps({"status": "success", "data": {}})), "not a list"),
        ((200, json.dumps({"status": "error"})), "not a successful API answer"),
        ((200, group_answer("demo", "dev", "many")), "not a number"),
    ],
)
def test_an_answer_that_does_not_read_is_a_warning_and_nothing_is_put(
    gateway: FakeGateway, answer: tuple[int, str], said: str
) -> None:
    gateway.api = answer
    warnings = pushgateway.push(gateway.url, run_record())
    assert len(warnings) == 1 and "not pushed" in warnings[0] and said in warnings[0], warnings
    assert gateway.methods() == ["GET"]  # counts are never overwritten with a guess


def test_a_refused_put_is_a_warning(gateway: FakeGateway) -> None:
    gateway.put_status = 400
    warnings = pushgateway.push(gateway.url, run_record())
    assert len(warnings) == 1 and "PUT: status 400" in warnings[0]


def test_a_gateway_that_never_answers_is_given_up_on_at_the_deadline() -> None:
    with SilentListener() as silent:
        warnings = pushgateway.push(f"http://127.0.0.1:{silent.port}", run_record(), timeout=0.5)
    assert len(warnings) == 1 and "no complete answer within 0.5 s" in warnings[0]


def test_a_secret_in_the_gateway_url_authenticates_and_never_shows(
    project: Project, gateway: FakeGateway
) -> None:
    project.write(".env", "PGW_PASSWORD=s3cr3t-pw\n")
    url = gateway.url.replace("http://", "http://ci:${PGW_PASSWORD}@")
    text = (project.root / "deploy.toml").read_text()
    project.write("deploy.toml", f'pushgateway = "{url}"\n' + text)
    gateway.put_status = 500  # a warning that names the gateway
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "pushgateway" in out and "status 500" in out
    assert "s3cr3t" not in out
    expected = "Basic " + base64.b64encode(b"ci:s3cr3t-pw").decode()
    assert [h.get("Authorization") for h in gateway.headers] == [expected, expected]


def test_a_gateway_that_is_down_is_a_warning_and_the_deploy_exits_0(project: Project) -> None:
    with SilentListener() as closed:
        port = closed.port
    text = (project.root / "deploy.toml").read_text()
    project.write("deploy.toml", f'pushgateway = "http://127.0.0.1:{port}"\n' + text)
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join((result.stdout + result.stderr).split())
    assert f"pushgateway http://127.0.0.1:{port}: not pushed" in out
    assert project.current() is not None


def test_prometheus_client_is_imported_only_when_a_run_has_metrics(project: Project) -> None:
    code = (
        "import sys; from pathlib import Path; from deploylib import actions;"
        "from deploylib.reporting import RecordingReporter;"
        "loaded = actions.load(Path('deploy.toml'), 'dev');"
        "actions.deploy(loaded, reporter=RecordingReporter(), revision='r1');"
        "assert 'prometheus_client' not in sys.modules, 'imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project.root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_series_read_back_keep_unknown_outcomes_and_drop_foreign_series() -> None:
    text = (
        "# TYPE deploylib_deploys_total counter\n"
        'deploylib_deploys_total{app="a",env="e",outcome="later"} 3\n'
        "# TYPE other_total counter\n"
        'other_total{app="a",env="e"} 1\n'
    )
    totals, problems = series.parse_text(text)
    assert totals.deploys == {("a", "e", "later"): 3}
    assert problems == ["other_total: not one of deploylib's series; left out"]
