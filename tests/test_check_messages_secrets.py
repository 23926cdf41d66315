"""Specifies that a failing HTTP or Prometheus check's message, which shows the start of what
the server answered on one line, shows no secret of the environment: masked before the body is
cut at ``BODY_SHOWN`` bytes and its blanks run together (a secret cut in two, or re-spaced,
would no longer be found by the mask)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploylib import http, prometheus
from deploylib.checks import Check
from deploylib.commands import Probe
from deploylib.context import StepContext
from deploylib.hosts import LOCAL
from deploylib.probes import perform_probe
from deploylib.secrets import MASK, Secret
from deploylib.testing import environment
from tests.testbed.prometheus import PrometheusAPI, api_error, vector

CUT = "SuperSecretToken-1234567890"  # across the 200-byte cut
SPACED = "Correct  Horse\tBattery  Staple"  # blanks a one-line message would run together


@pytest.fixture
def server() -> Iterator[PrometheusAPI]:
    with PrometheusAPI() as api:
        yield api


def message(check: Check) -> str:
    env = environment(variables={"API_TOKEN": Secret(CUT), "PASSPHRASE": Secret(SPACED)})
    ctx = StepContext(
        env=env, host=LOCAL, release="20260101T000000Z-abc", revision="abc", artifact=""
    )
    probe = check.operation(ctx)
    assert isinstance(probe, Probe)
    result = perform_probe(probe)
    assert not result.ok
    return result.stderr


def shows_part_of(text: str, secret: str) -> bool:
    words = " ".join(secret.split())
    return any(form[i : i + 6] in text for form in (secret, words) for i in range(len(form) - 5))


BODIES = {
    "across the cut": "e" * 185 + f" token={CUT} and more",
    "with its blanks": f"<p>passphrase: {SPACED}</p>",
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_a_failing_http_checks_message_masks_before_it_cuts(
    server: PrometheusAPI, body: str
) -> None:
    server.answer = (500, body)
    said = message(http(server.url + "/health"))
    assert "status 500" in said and "body:" in said
    assert MASK in said
    assert not shows_part_of(said, CUT) and not shows_part_of(said, SPACED)


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_a_failing_prometheus_checks_message_masks_before_it_cuts(
    server: PrometheusAPI, body: str
) -> None:
    server.answer = (503, body)
    said = message(prometheus(server.url, "up", max=1))
    assert "HTTP 503" in said and MASK in said
    assert not shows_part_of(said, CUT) and not shows_part_of(said, SPACED)
    server.answer = (400, api_error("bad_data", body))
    said = message(prometheus(server.url, "up", max=1))
    assert "bad_data" in said and MASK in said
    assert not shows_part_of(said, CUT) and not shows_part_of(said, SPACED)


def test_a_samples_labels_are_masked_before_they_are_cut(server: PrometheusAPI) -> None:
    """A label value holding a secret, across the cut of a long series name."""
    labels = {"__name__": "x" * 100, "token": f"{'y' * 40}{CUT}"}
    server.answer = (200, vector((labels, "5")))
    said = message(prometheus(server.url, "up", max=1))
    assert "above max 1" in said and MASK in said
    assert not shows_part_of(said, CUT)
