"""The ports a pipeline's checks need on each host, compared with the firewall settings."""

from __future__ import annotations

from deploylib import Pipeline, build, command, http, push, switch, tcp, verify
from deploylib.config import load_environment
from deploylib.port_needs import firewall_warnings, needed_ports
from tests.conftest import Project

TOML = """\
app = "demo"
deploy_to = "/srv/demo"
[environments.prod]
hosts = ["deploy@192.0.2.10", "deploy@192.0.2.11"]
{firewall}
"""

PIPELINE = Pipeline(
    build("tar -czf {artifact} ."),
    push(),
    switch(),
    verify(
        http("http://{host_address}:8000/health"),
        tcp(6379),
        http("https://lb.example.com/health"),  # not the host's: a load balancer's
        command("true"),
    ),
)


def ports_for(project: Project, firewall: str) -> tuple[list[tuple[str, int]], list[str]]:
    project.write("deploy.toml", TOML.format(firewall=firewall))
    env = load_environment(project.root / "deploy.toml", "prod", environ={})
    needed = needed_ports(PIPELINE, env, env.hosts)
    return [(n.host, n.port) for n in needed], firewall_warnings(env, needed)


def test_the_checked_ports_of_each_host(project: Project) -> None:
    ports, warnings = ports_for(project, "")
    assert ports == [
        ("192.0.2.10", 8000),
        ("192.0.2.10", 6379),
        ("192.0.2.11", 8000),
        ("192.0.2.11", 6379),
    ]
    assert warnings == []  # no firewall settings: nothing to compare


def test_a_drop_firewall_that_would_fail_verify_is_named(project: Project) -> None:
    _, warnings = ports_for(
        project,
        '[environments.prod.firewall]\npolicy = "drop"\n'
        'allow = [22, { port = 6379, from = "10.0.0.0/8" }]',
    )
    assert len(warnings) == 4
    assert warnings[0].startswith("192.0.2.10: port 8000 (GET http://192.0.2.10:8000/health")
    assert "firewall drops it: add 8000 to firewall.allow" in warnings[0]
    assert "only from 10.0.0.0/8" in warnings[1]


def test_accept_or_allowed_ports_warn_of_nothing(project: Project) -> None:
    assert ports_for(project, "[environments.prod.firewall]\nallow = [22]")[1] == []
    allowed = '[environments.prod.firewall]\npolicy = "drop"\nallow = [22, 8000, 6379]'
    assert ports_for(project, allowed)[1] == []
