"""``pushgateway``: real deploys push their metrics to a real Prometheus Pushgateway (Debian's
``prometheus-pushgateway``), which a real Prometheus scrapes with ``honor_labels: true``; the
values are asserted as Prometheus's query API answers them. Both run on 127.0.0.1, started and
stopped (by PID) here; without either binary the tests skip and say so (.ci/run installs both).

The controller keeps nothing between deploys (as a CI runner): every count comes from the
gateway, read back and added to, also from another project directory and across a restart of
the gateway. A gateway that is stopped, or that never answers, is a warning: the deploy exits 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploylib.metrics import pushgateway
from deploylib.metrics.series import LiveRelease, RunRecord
from tests.conftest import BASIC_PIPELINE, Project
from tests.testbed.prometheus import PROMETHEUS, RealPrometheus
from tests.testbed.pushgateway import PUSHGATEWAY, SCRAPE_GATEWAY, RealPushgateway
from tests.testbed.slowhttp import SilentListener

pytestmark = pytest.mark.slow

Stack = tuple[RealPushgateway, RealPrometheus]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    missing = [str(p) for p in (PUSHGATEWAY, PROMETHEUS) if not p.exists()]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed (apt-get install prometheus-pushgateway "
            "prometheus; .ci/run does)"
        )
    with RealPushgateway(tmp_path / "gateway") as gateway:
        config = SCRAPE_GATEWAY.format(port=gateway.port)
        with RealPrometheus(tmp_path / "prometheus", config=config) as prometheus:
            yield gateway, prometheus


def pushing_to(project: Project, url: str) -> Project:
    text = (project.root / "deploy.toml").read_text()
    project.write("deploy.toml", f'pushgateway = "{url}"\n' + text)
    return project


def deploy_ok(project: Project) -> str:
    result = project.cli("deploy", "--env", "dev")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "not pushed" not in out, out
    return out


def deploy_failing(project: Project, marker: str) -> None:
    (project.root / "app" / marker).touch()
    try:
        result = project.cli("deploy", "--env", "dev")
    finally:
        (project.root / "app" / marker).unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not pushed" not in result.stdout + result.stderr


def expect(prometheus: RealPrometheus, query: str, wanted: list[float]) -> None:
    """Wait (polling, bounded) until Prometheus answers ``query`` with ``wanted``."""
    seen: list[list[float]] = []

    def answered() -> bool:
        seen.append(prometheus.values(query))
        return seen[-1] == wanted

    try:
        prometheus.wait_until(answered, f"answered {query} with {wanted}", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast answer: {seen[-1:]}") from None


def deploys(outcome: str) -> str:
    return f'deploylib_deploys_total{{job="deploylib",app="demo",env="dev",outcome="{outcome}"}}'


def test_deploys_and_rollbacks_are_counted_as_prometheus_scrapes_them(
    project: Project, stack: Stack, tmp_path: Path
) -> None:
    gateway, prometheus = stack
    pushing_to(project, gateway.url)
    deploy_ok(project)
    deploy_ok(project)
    deploy_failing(project, "BROKEN")  # verify fails after the switch: put back
    deploy_failing(project, "FAIL_PREPARE")  # fails before any host switched
    done = project.cli("rollback", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    live = project.current()

    expect(prometheus, deploys("success"), [2.0])
    expect(prometheus, deploys("rolled_back"), [1.0])
    expect(prometheus, deploys("failed"), [1.0])
    rollbacks = 'deploylib_rollbacks_total{app="demo",env="dev",outcome="success"}'
    expect(prometheus, rollbacks, [1.0])
    expect(prometheus, 'deploylib_deploy_duration_seconds_count{app="demo",env="dev"}', [4.0])
    expect(
        prometheus,
        'sum(deploylib_deploys_total{app="demo",env="dev",outcome!="success"})'
        ' / sum(deploylib_deploys_total{app="demo",env="dev"})',
        [0.5],
    )
    info = prometheus.samples('deploylib_release_info{app="demo",env="dev"}')
    assert [(labels["release"], value) for labels, value in info] == [(live, 1.0)]
    assert info[0][0]["job"] == "deploylib"  # the gateway's group labels, honoured
    last = prometheus.values('deploylib_last_success_timestamp_seconds{app="demo",env="dev"}')
    assert len(last) == 1 and last[0] > 1.7e9

    # another machine with no state of its own (a CI runner) goes on counting
    runner = Project(tmp_path / "runner")
    runner.write("deploy.toml", (project.root / "deploy.toml").read_text())
    runner.write("pipelines/web.py", BASIC_PIPELINE)
    runner.write("app/index.txt", "hello\n")
    deploy_ok(runner)
    expect(prometheus, deploys("success"), [3.0])

    # and so does the gateway once restarted: it kept the group in its persistence file
    gateway.stop()
    gateway.start()
    deploy_ok(project)
    expect(prometheus, deploys("success"), [4.0])


def test_a_stopped_gateway_is_a_warning_and_the_deploy_exits_0(
    project: Project, stack: Stack
) -> None:
    gateway, prometheus = stack
    pushing_to(project, gateway.url)
    deploy_ok(project)
    gateway.stop()
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert f"pushgateway {gateway.url}: not pushed" in said
    assert "Connection refused" in said
    gateway.start()
    deploy_ok(project)
    # the count the stopped gateway missed is lost; the others are all there
    expect(prometheus, deploys("success"), [2.0])


def test_hostile_label_values_go_through_the_real_gateway_exactly(stack: Stack) -> None:
    gateway, _ = stack
    app, env = 'a"b\\c{d}=,', "x/y z/../é"
    record = RunRecord(app, env, "deploy", "success", 3.0, 1.8e9, LiveRelease("r/1", 'v"2'))
    assert pushgateway.push(gateway.url, record) == []
    assert pushgateway.push(gateway.url, record) == []  # read back through the API, added to
    status, body = gateway.get("/api/v1/metrics")
    assert status == 200
    (group,) = [g for g in json.loads(body)["data"] if g["labels"].get("env") == env]
    assert group["labels"] == {"job": "deploylib", "app": app, "env": env}
    (counted,) = group["deploylib_deploys_total"]["metrics"]
    assert counted["value"] == "2"
    (live,) = group["deploylib_release_info"]["metrics"]
    assert (live["labels"]["release"], live["labels"]["revision"]) == ("r/1", 'v"2')


def test_a_gateway_that_never_answers_ends_the_deploy_with_a_warning(project: Project) -> None:
    with SilentListener() as silent:
        pushing_to(project, f"http://127.0.0.1:{silent.port}")
        result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "not pushed: no complete answer within 5 s" in said
    assert project.current() is not None
