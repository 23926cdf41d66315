"""The ``prometheus`` check: an instant query from this machine, every sample held to bounds.

Against a stand-in for Prometheus's query API on 127.0.0.1 (canned answers, the request as it
arrived), and, marked slow, against a real Prometheus (Debian's ``prometheus``) scraping a
small app whose errors the test turns on."""

from __future__ import annotations

import math
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploylib import ConfigError, DeployFailed, actions, prometheus
from deploylib.checks import Check
from deploylib.commands import Probe, Result
from deploylib.context import StepContext
from deploylib.hosts import LOCAL
from deploylib.probes import BODY_LIMIT, perform_probe
from deploylib.secrets import Secret
from deploylib.testing import environment
from tests.conftest import Project
from tests.testbed.prometheus import (
    PROMETHEUS,
    MetricsApp,
    PrometheusAPI,
    RealPrometheus,
    Traffic,
    api_error,
    scalar,
    vector,
)
from tests.testbed.slowhttp import SlowHTTPServer

RELEASE = "20260301T000000Z-abc1234"
ERROR_RATIO = (
    'sum(rate(http_requests_total{job="api", status=~"5.."}[1m]))'
    ' / sum(rate(http_requests_total{job="api"}[1m]))'
)


@pytest.fixture
def api() -> Iterator[PrometheusAPI]:
    with PrometheusAPI() as server:
        yield server


def probe_of(check: Check, **variables: str | Secret) -> Probe:
    """The operation ``check`` makes for this machine in a deploy of ``RELEASE``."""
    env = environment(variables=variables)
    ctx = StepContext(env=env, host=LOCAL, release=RELEASE, revision="abc1234", artifact="")
    op = check.operation(ctx)
    assert isinstance(op, Probe)
    return op


def run(check: Check) -> Result:
    return perform_probe(probe_of(check))


# ---------------------------------------------------------------------------- bounds


def test_every_sample_within_the_bounds_passes(api: PrometheusAPI) -> None:
    api.answer = (200, vector(({"status": "500"}, "0.001"), ({"status": "503"}, "0")))
    result = run(prometheus(api.url, ERROR_RATIO, max=0.01))
    assert result.ok, result
    assert "2 samples <= 0.01" in result.stdout


def test_a_sample_over_max_fails_naming_query_value_labels_and_bound(api: PrometheusAPI) -> None:
    api.answer = (
        200,
        vector(
            ({"job": "api", "status": "500"}, "0.002"),
            ({"__name__": "http_errors", "job": "api", "status": "502"}, "0.25"),
        ),
    )
    result = run(prometheus(api.url, ERROR_RATIO, max=0.01))
    assert not result.ok and not result.timed_out
    assert result.stderr == (
        f"prometheus {api.url} {ERROR_RATIO}: "
        'http_errors{job="api", status="502"} = 0.25, above max 0.01'
    )


def test_a_sample_below_min_fails(api: PrometheusAPI) -> None:
    api.answer = (200, vector(({"instance": "a"}, "3"), ({"instance": "b"}, "1"), ({}, "0")))
    result = run(prometheus(api.url, "up", min=2))
    assert not result.ok
    assert result.stderr.endswith(
        '{instance="b"} = 1, below min 2 (and 1 more sample out of bounds)'
    )


def test_min_and_max_together(api: PrometheusAPI) -> None:
    check = prometheus(api.url, "queue_depth", min=1, max=10)
    assert probe_of(check).line == f"prometheus {api.url} queue_depth >= 1 and <= 10"
    for value, ok in (("1", True), ("10", True), ("0.5", False), ("10.5", False)):
        api.answer = (200, vector(({}, value)))
        assert run(check).ok is ok, value


@pytest.mark.parametrize("value", ["NaN", "+Inf"])
def test_nan_fails_and_inf_is_above_any_max(api: PrometheusAPI, value: str) -> None:
    api.answer = (200, vector(({"job": "api"}, value)))
    result = run(prometheus(api.url, ERROR_RATIO, max=0.01))
    assert not result.ok
    assert f'{{job="api"}} = {value}' in result.stderr
    if value == "NaN":
        assert "not a number, so not <= 0.01" in result.stderr
    else:
        assert "above max 0.01" in result.stderr


def test_a_scalar_result_is_one_sample(api: PrometheusAPI) -> None:
    check = prometheus(api.url, "scalar(sum(up))", min=3)
    api.answer = (200, scalar("3"))
    assert run(check).ok
    api.answer = (200, scalar("2"))
    assert run(check).stderr.endswith("scalar(sum(up)): scalar = 2, below min 3")


# ---------------------------------------------------------------------------- no data, errors


def test_no_data_fails_unless_on_no_data_is_pass(api: PrometheusAPI) -> None:
    api.answer = (200, vector())
    failed = run(prometheus(api.url, ERROR_RATIO, max=0.01))
    assert not failed.ok
    assert "no data (an empty result)" in failed.stderr and ERROR_RATIO in failed.stderr
    passed = run(prometheus(api.url, ERROR_RATIO, max=0.01, on_no_data="pass"))
    assert passed.ok, passed
    assert "no data" in passed.stdout


def test_an_api_error_fails_with_its_type_and_message(api: PrometheusAPI) -> None:
    api.answer = (400, api_error("bad_data", 'invalid parameter "query": 1:5: parse error'))
    result = run(prometheus(api.url, "sum(", max=1))
    assert not result.ok
    assert result.stderr == (
        f'prometheus {api.url} sum(: HTTP 400, bad_data: invalid parameter "query": '
        "1:5: parse error"
    )
    api.answer = (200, api_error("timeout", "query timed out in expression evaluation"))
    assert run(prometheus(api.url, "up", max=1)).stderr.endswith(
        "up: timeout: query timed out in expression evaluation"
    )


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((503, "Service Unavailable\n"), "HTTP 503, expected 200; body: Service Unavailable"),
        ((200, "<html>not json"), "not an answer of Prometheus's query API; body: <html>not"),
        ((200, '{"status": "success"}'), "not an answer of Prometheus's query API (no data)"),
        (
            (200, vector(({}, "lots"))),
            "a sample's value 'lots' is not a number",
        ),
        (
            (
                200,
                '{"status":"success","data":{"resultType":"matrix","result":'
                '[{"metric":{},"values":[[1,"1"]]}]}}',
            ),
            "the query returns a range vector (matrix)",
        ),
    ],
)
def test_an_answer_that_is_not_a_good_one_fails(
    api: PrometheusAPI, answer: tuple[int, str], said: str
) -> None:
    api.answer = answer
    result = run(prometheus(api.url, "up", min=1))
    assert not result.ok
    assert said in result.stderr


def test_an_answer_over_the_read_limit_fails_rather_than_being_judged_in_part(
    api: PrometheusAPI,
) -> None:
    many = [({"instance": f"host-{n:06d}", "job": "node"}, "1") for n in range(20_000)]
    api.answer = (200, vector(*many))
    assert len(api.answer[1]) > BODY_LIMIT
    result = run(prometheus(api.url, "up", min=1))
    assert not result.ok
    assert f"the answer is over the {BODY_LIMIT} bytes read; aggregate the query" in result.stderr


def test_an_unreachable_server_fails() -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = run(prometheus(url, "up", min=1))
    assert not result.ok
    assert result.stderr.startswith(f"prometheus {url} up: ConnectionRefusedError")


def test_a_server_that_trickles_forever_ends_at_the_deadline() -> None:
    with SlowHTTPServer("body", interval=0.5) as server:
        check = prometheus(f"http://127.0.0.1:{server.port}", "up", min=1, timeout=1.5)
        started = time.monotonic()
        result = run(check)
        took = time.monotonic() - started
        assert server.requests  # it was asked, and kept answering a byte at a time
    assert not result.ok and result.timed_out
    assert result.stderr == (
        f"prometheus http://127.0.0.1:{server.port} up >= 1: no complete answer within 1.5 s"
    )
    assert took < 10, took  # the server would go on for ten minutes


# ---------------------------------------------------------------------------- the query sent


def test_the_query_reaches_the_server_url_encoded_exactly(api: PrometheusAPI) -> None:
    api.answer = (200, vector(({}, "0")))
    # braces, quotes, spaces and the bytes a URL gives meaning to: & = + # % / ?
    query = (
        'sum(rate(http_requests_total{status=~"5..", release="{release}", path!~"/a?b&c=d#e%f"}'
        "[1m])) + 0 or on() vector(0)"
    )
    filled = query.replace("{release}", RELEASE)
    assert run(prometheus(api.url + "/", query, max=0)).ok
    assert api.paths == ["/api/v1/query?query=" + urllib.parse.quote(filled, safe="")]
    assert api.queries() == [filled]
    # a server under a path prefix (--web.route-prefix) keeps it
    assert run(prometheus(api.url + "/prom", "up", max=1)).ok
    assert api.paths[-1] == "/prom/api/v1/query?query=up"


def test_the_check_line_reads_as_the_check() -> None:
    check = prometheus("http://{host_address}:9090", ERROR_RATIO, max=0.01)
    assert probe_of(check).line == f"prometheus http://127.0.0.1:9090 {ERROR_RATIO} <= 0.01"
    multi_line = prometheus("http://prom:9090", "sum(\n  up\n)", min=1, on_no_data="pass")
    assert (
        probe_of(multi_line).line == "prometheus http://prom:9090 sum( up ) >= 1 (no data passes)"
    )


def test_url_and_query_take_variables(api: PrometheusAPI) -> None:
    api.answer = (200, vector(({}, "1")))
    port = str(api.port)
    check = prometheus("http://127.0.0.1:${PROM_PORT}", 'up{env="${STAGE}"}', min=1)
    probe = probe_of(check, PROM_PORT=port, STAGE="prod")
    assert (probe.url, probe.query) == (api.url, 'up{env="prod"}')
    assert perform_probe(probe).ok


# ---------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({}, "give max= or min= (or both)"),
        ({"url": "prom:9090", "max": 1}, "the Prometheus server's base URL, http:// or https://"),
        ({"max": 1, "min": 2}, "min=2 is above max=1"),
        ({"max": math.nan}, "max=nan: a bound is a number"),
        ({"max": "0.01"}, "max='0.01': a bound is a number"),
        ({"max": 1, "on_no_data": "ignore"}, 'on_no_data is "fail" or "pass", not \'ignore\''),
        ({"max": 1, "timeout": 0}, "timeout=0: a number of seconds > 0"),
    ],
)
def test_bad_arguments_are_refused_when_the_check_is_made(
    kwargs: dict[str, object], said: str
) -> None:
    arguments = {"url": "http://prom:9090", "query": "up", **kwargs}
    with pytest.raises(ConfigError) as refused:
        prometheus(**arguments)  # type: ignore[arg-type]
    assert said in str(refused.value)
    assert "prometheus(" in str(refused.value)


# ---------------------------------------------------------------------------- in a deploy

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, prometheus

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    switch(),
    verify(prometheus({url!r}, {query!r}, max=0.01), attempts={attempts}, wait=0),
)
"""


def test_a_deploy_verifies_with_a_label_matcher_query(project: Project, api: PrometheusAPI) -> None:
    query = 'sum(rate(http_requests_total{status=~"5..", release="{release}"}[1m]))'
    project.write("pipelines/web.py", PIPELINE.format(url=api.url, query=query, attempts=1))
    api.answer = (200, vector(({}, "0")))

    outcome, reporter = project.deploy()

    assert project.current() == outcome.release
    filled = f'sum(rate(http_requests_total{{status=~"5..", release="{outcome.release}"}}[1m]))'
    assert api.queries() == [filled]
    assert api.paths == ["/api/v1/query?query=" + urllib.parse.quote(filled, safe="")]
    [done] = [e for e in reporter.events if e.kind == "deploy.ok"]
    assert done.data["verified"] == [f"prometheus {api.url} {filled} <= 0.01"]


def test_a_deploy_over_the_bound_is_put_back_and_the_labels_are_redacted(
    project: Project, api: PrometheusAPI
) -> None:
    secret = "t0ps3cr3t-label"
    project.write(".env", f"API_TOKEN={secret}\n")
    project.write("pipelines/web.py", PIPELINE.format(url=api.url, query=ERROR_RATIO, attempts=2))
    api.answer = (200, vector(({}, "0")))
    first = project.cli("deploy", "--env", "dev")
    assert first.returncode == 0, first.stdout + first.stderr
    old = project.current()

    api.answer = (200, vector(({"job": "api", "token": secret}, "0.2")))
    result = project.cli("deploy", "--env", "dev")

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert project.current() == old
    assert '{job="api", token=***} = 0.2, above max 0.01' in output
    assert secret not in output


def test_a_canary_whose_errors_climb_during_the_bake_is_put_back(
    project: Project, api: PrometheusAPI
) -> None:
    project.write("pipelines/web.py", PIPELINE.format(url=api.url, query=ERROR_RATIO, attempts=1))
    good, bad = (200, vector(({}, "0"))), (200, vector(({}, "0.3")))
    api.answer = good
    first, _ = project.deploy()
    project.write(
        "deploy.toml",
        """\
        app = "demo"
        [environments.dev]
        hosts = ["local"]
        deploy_to = "target"
        [environments.dev.strategy]
        kind = "canary"
        bake = 30
        wait = 0.05
        """,
    )
    # the verify passes, the first two rounds of the bake too, the third sees the errors
    api.script = [good, good, good, bad]
    api.paths.clear()

    with pytest.raises(DeployFailed, match=r"\{\} = 0.3, above max 0.01") as failed:
        project.deploy()

    assert project.current() == first.release
    assert failed.value.placement == {"local": first.release}
    assert len(api.paths) == 4 + 1  # verify and 3 rounds of the bake; the put-back's verify


def test_an_unknown_placeholder_in_a_query_is_refused_at_load(project: Project) -> None:
    query = 'up{release="{relase}"}'
    project.write(
        "pipelines/web.py", PIPELINE.format(url="http://prom:9090", query=query, attempts=1)
    )
    with pytest.raises(ConfigError, match=r"unknown placeholder \{relase\}") as refused:
        actions.load(project.root / "deploy.toml", "dev")
    assert "web.py" in str(refused.value)
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 2
    assert "{relase}" in result.stdout + result.stderr
    assert project.current() is None


def test_a_failed_check_raises_deploy_failed_through_the_api(
    project: Project, api: PrometheusAPI
) -> None:
    project.write("pipelines/web.py", PIPELINE.format(url=api.url, query="up", attempts=1))
    api.answer = (200, vector())
    with pytest.raises(DeployFailed, match=r"up: no data"):
        project.deploy()
    assert project.current() is None


# ---------------------------------------------------------------------------- a real Prometheus

#: the error ratio as docs/strategies.md writes it: no error series yet is a ratio of 0, no
#: traffic is no data; ``{host_address}`` is a placeholder inside a label matcher
APP_ERROR_RATIO = (
    '(sum(rate(app_requests_total{{instance="{{host_address}}:{port}", status=~"5.."}}[30s]))'
    " or vector(0))"
    ' / sum(rate(app_requests_total{{instance="{{host_address}}:{port}"}}[30s]))'
)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.access(PROMETHEUS, os.X_OK),
    reason=f"{PROMETHEUS} is absent: apt-get install prometheus (.ci/run does)",
)
def test_a_real_prometheus_passes_a_healthy_deploy_and_fails_an_erroring_one(
    project: Project, tmp_path: Path
) -> None:
    with (
        MetricsApp() as app,
        Traffic(app.port) as traffic,
        RealPrometheus(tmp_path / "prometheus", app.port) as server,
    ):
        query = APP_ERROR_RATIO.format(port=app.port)
        filled = query.replace("{host_address}", "127.0.0.1")
        # a ratio of 0 once two scrapes of the traffic are in the window (and no error series)
        server.wait_until(lambda: server.values(filled) == [0.0], "saw the traffic")
        project.write("pipelines/web.py", PIPELINE.format(url=server.url, query=query, attempts=2))
        healthy = project.cli("deploy", "--env", "dev")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert f"verified: prometheus {server.url} {filled} <= 0.01" in healthy.stdout
        live = project.current()

        app.failing.set()
        server.wait_until(lambda: any(v > 0.01 for v in server.values(filled)), "saw the errors")
        erroring = project.cli("deploy", "--env", "dev")

        output = erroring.stdout + erroring.stderr
        assert erroring.returncode == 1, output
        assert project.current() == live
        assert f"{filled}: {{}} = " in output and "above max 0.01" in output
        assert traffic.sent > 0 and app.counts["500"] > 0
    assert server.process is not None and server.process.poll() is not None
