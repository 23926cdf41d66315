"""Specifies deploylib.firewall and deploylib.remote.firewall against the fake backend: the
settings' validation and wording, the ruleset's text, the SSH port guard, the diff, what
``apply`` sends (nothing when unchanged), and the ufw command text (ufw is not run for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploylib import firewall
from deploylib.backends.fake import FakeBackend
from deploylib.commands import Command, Operation, Result
from deploylib.config import Environment, load_environment
from deploylib.errors import ConfigError, StepFailed
from deploylib.remote import firewall as remote
from tests.conftest import BASIC_TOML, Project

BASE = """\
app = "demo"
deploy_to = "/srv/demo"

[environments.prod]
hosts = ["deploy@203.0.113.5", { address = "203.0.113.6", port = 2222 }]
"""


def load(tmp_path: Path, toml: str) -> Environment:
    (tmp_path / "deploy.toml").write_text(toml)
    return load_environment(tmp_path / "deploy.toml", "prod", environ={})


def refused(tmp_path: Path, toml: str) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, toml)
    assert error.value.exit_code == 2
    return error.value


def with_firewall(body: str, table: str = "[environments.prod.firewall]") -> str:
    return BASE + f"{table}\n{body}\n"


# ---------------------------------------------------------------------------- settings


def test_no_firewall_table_means_none(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).firewall is None


def test_settings_are_read_with_defaults(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        with_firewall('allow = [22, 2222, { port = 8000, from = "10.0.0.0/8", proto = "udp" }]'),
    )
    assert env.firewall is not None
    assert env.firewall.policy == "accept" and env.firewall.tool == "nftables"
    assert env.firewall_key == "environments.prod.firewall"
    assert [a.rule.name for a in firewall.allowed(env.firewall)] == [
        "allow tcp 22",
        "allow tcp 2222",
        "allow udp 8000 from 10.0.0.0/8",
    ]


def test_a_top_level_firewall_applies_to_every_environment(tmp_path: Path) -> None:
    toml = 'app = "demo"\ndeploy_to = "/srv/demo"\n[firewall]\npolicy = "drop"\n'
    toml += "allow = [22, 2222]\n"
    toml += '[environments.prod]\nhosts = ["203.0.113.5", "203.0.113.6:2222"]\n'
    env = load(tmp_path, toml)
    assert env.firewall is not None and env.firewall.policy == "drop"
    assert env.firewall_key == "firewall"


BAD = [
    ('policy = "reject"', "environments.prod.firewall.policy", "'accept' or 'drop'"),
    ('tool = "iptables"', "environments.prod.firewall.tool", "'nftables' or 'ufw'"),
    ("allow = [0]", "environments.prod.firewall.allow.0", "greater than or equal to 1"),
    ("allow = [65536]", "environments.prod.firewall.allow.0", "less than or equal to 65535"),
    ('allow = ["80"]', "environments.prod.firewall.allow.0", "integer"),
    ("allow = [{ from = '10.0.0.0/8' }]", "environments.prod.firewall.allow.0.port", "required"),
    (
        "allow = [{ port = 80, from = 'nowhere' }]",
        "environments.prod.firewall.allow.0.from",
        "IPv4 or IPv6 address or network",
    ),
    (
        "allow = [{ port = 80, from = '10.0.0.1/8' }]",
        "environments.prod.firewall.allow.0.from",
        "host bits set",
    ),
    (
        "allow = [{ port = 80, proto = 'icmp' }]",
        "environments.prod.firewall.allow.0.proto",
        "'tcp' or 'udp'",
    ),
    ("allow = [{ port = 80, source = '10.0.0.0/8' }]", "allow.0.source", "unknown key"),
    ("ports = [80]", "environments.prod.firewall.ports", "unknown key"),
]


@pytest.mark.parametrize(("body", "key", "words"), BAD, ids=[b for b, _, _ in BAD])
def test_bad_settings_are_refused_naming_the_key(
    tmp_path: Path, body: str, key: str, words: str
) -> None:
    error = refused(tmp_path, with_firewall(body))
    assert error.key is not None and error.key.endswith(key), error
    assert words in error.message, error


def test_an_ipv6_network_and_a_single_address_are_accepted(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        with_firewall(
            "allow = [{ port = 80, from = 'fd00::/8' }, { port = 81, from = '10.1.2.3' }]"
        ),
    )
    assert env.firewall is not None
    text = firewall.ruleset(env.firewall)
    assert "ip6 saddr fd00::/8 tcp dport 80 accept" in text
    assert "ip saddr 10.1.2.3/32 tcp dport 81 accept" in text


# ---------------------------------------------------------------------------- the SSH guard


def test_drop_without_the_ssh_port_is_refused_naming_key_and_port(tmp_path: Path) -> None:
    error = refused(tmp_path, with_firewall('policy = "drop"\nallow = [22, 80]'))
    assert error.key == "environments.prod.firewall.allow"
    assert "port 2222" in error.message and "203.0.113.6" in error.message
    assert "not in allow" in error.message


def test_drop_with_ssh_only_from_a_network_is_refused(tmp_path: Path) -> None:
    error = refused(
        tmp_path,
        with_firewall("policy = 'drop'\nallow = [2222, { port = 22, from = '10.0.0.0/8' }]"),
    )
    assert "port 22 is only from 10.0.0.0/8" in error.message


def test_the_ssh_port_comes_from_the_ssh_table(tmp_path: Path) -> None:
    toml = BASE.replace(', { address = "203.0.113.6", port = 2222 }', "")
    toml += "[environments.prod.ssh]\nport = 2200\n"
    error = refused(tmp_path, toml + "[environments.prod.firewall]\npolicy = 'drop'\nallow = [22]")
    assert "port 2200" in error.message
    assert load(tmp_path, toml + "[environments.prod.firewall]\npolicy = 'drop'\nallow = [2200]")


def test_accept_never_needs_the_ssh_port_and_local_has_none(tmp_path: Path) -> None:
    assert load(tmp_path, with_firewall("allow = [80]")).firewall is not None
    local = BASIC_TOML + "[environments.dev.firewall]\npolicy = 'drop'\nallow = [80]\n"
    (tmp_path / "deploy.toml").write_text(local)
    assert load_environment(tmp_path / "deploy.toml", "dev", environ={}).firewall is not None


def test_check_ssh_checks_the_hosts_given(tmp_path: Path) -> None:
    env = load(tmp_path, with_firewall("policy = 'drop'\nallow = [22, 2222]"))
    firewall.check_ssh(env)
    assert env.firewall is not None
    narrowed = env.firewall.model_copy(update={"allow": [22]})
    with pytest.raises(ConfigError, match="port 2222"):
        firewall.refuse_cutting_ssh(narrowed, env.hosts, 22, key=env.firewall_key)


def test_setup_with_a_firewall_cutting_ssh_exits_2_touching_nothing(project: Project) -> None:
    project.write(
        "deploy.toml",
        BASIC_TOML
        + '[environments.prod]\nhosts = ["root@203.0.113.9"]\n'
        + "[environments.prod.firewall]\npolicy = 'drop'\nallow = [80]\n",
    )
    result = project.cli("check", "--env", "prod")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "environments.prod.firewall.allow" in result.stderr + result.stdout
    assert "port 22" in result.stderr + result.stdout


# ---------------------------------------------------------------------------- the ruleset


def test_the_ruleset_is_our_table_only_with_named_rules(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        with_firewall("policy = 'drop'\nallow = [22, 2222, { port = 8000, from = '10.0.0.0/8' }]"),
    )
    assert env.firewall is not None
    assert firewall.ruleset(env.firewall) == (
        "table inet deploylib {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority 0; policy drop;\n"
        '\t\tct state established,related accept comment "deploylib: established"\n'
        '\t\tiif "lo" accept comment "deploylib: loopback"\n'
        '\t\tmeta l4proto icmp accept comment "deploylib: icmp"\n'
        '\t\tmeta l4proto ipv6-icmp accept comment "deploylib: icmpv6"\n'
        '\t\ttcp dport 22 accept comment "deploylib: allow tcp 22"\n'
        '\t\ttcp dport 2222 accept comment "deploylib: allow tcp 2222"\n'
        "\t\tip saddr 10.0.0.0/8 tcp dport 8000 accept "
        'comment "deploylib: allow tcp 8000 from 10.0.0.0/8"\n'
        "\t}\n"
        "}\n"
    )


def test_the_transaction_replaces_only_our_table() -> None:
    text = remote.transaction("table inet deploylib {\n}\n")
    assert text == "table inet deploylib\ndelete table inet deploylib\ntable inet deploylib {\n}\n"
    assert "flush" not in text
    command = remote.apply_command("table inet deploylib {\n}\n")
    assert command.script.endswith("nft -f -") and command.stdin == text.encode()


def test_duplicate_allow_entries_make_one_rule(tmp_path: Path) -> None:
    env = load(tmp_path, with_firewall("allow = [80, 80, { port = 80 }]"))
    assert env.firewall is not None
    assert firewall.ruleset(env.firewall).count("tcp dport 80 accept") == 1


# ---------------------------------------------------------------------------- diff and apply

LISTED = """\
table inet deploylib {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept comment "deploylib: established"
\t\tiif "lo" accept comment "deploylib: loopback"
\t\tmeta l4proto icmp accept comment "deploylib: icmp"
\t\tmeta l4proto ipv6-icmp accept comment "deploylib: icmpv6"
\t\ttcp dport 22 accept comment "deploylib: allow tcp 22"
\t\ttcp dport 2222 accept comment "deploylib: allow tcp 2222"
\t\ttcp dport 8000 accept comment "deploylib: allow tcp 8000"
\t}
}
"""


def drop_env(tmp_path: Path, allow: str = "[22, 2222, 8000]") -> Environment:
    return load(tmp_path, with_firewall(f"policy = 'drop'\nallow = {allow}"))


def listing(text: str) -> FakeBackend:
    def answer(op: Operation) -> Result | None:
        if isinstance(op, Command) and op.description == remote.READ:
            return Result(0, text)
        return None

    return FakeBackend("h", answer)


def test_the_same_rules_as_listed_by_nft_are_unchanged_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    env = drop_env(tmp_path)
    backend = listing(LISTED)
    outcome = firewall.apply(backend, env, env.hosts[0], dry_run=False)
    assert not outcome.changed and outcome.diff == [] and not outcome.applied
    assert [c.description for c in backend.commands] == [remote.READ]


def test_a_removed_port_is_a_minus_line_and_the_table_is_replaced(tmp_path: Path) -> None:
    env = drop_env(tmp_path, "[22, 2222, { port = 9000, proto = 'udp' }]")
    backend = listing(LISTED)
    outcome = firewall.apply(backend, env, env.hosts[0], dry_run=False)
    assert outcome.changed and outcome.applied
    assert outcome.diff == ["- tcp dport 8000 accept", "+ udp dport 9000 accept"]
    _read, apply = backend.commands
    assert apply.description == remote.APPLY
    assert apply.stdin == remote.transaction(outcome.ruleset).encode()


def test_an_absent_table_is_all_plus_lines_and_a_dry_run_sends_nothing(tmp_path: Path) -> None:
    env = drop_env(tmp_path)
    backend = listing("")
    outcome = firewall.apply(backend, env, env.hosts[0], dry_run=True)
    assert outcome.changed and not outcome.applied
    assert outcome.diff[0] == "+ policy drop"
    assert "+ tcp dport 8000 accept" in outcome.diff
    assert [c.description for c in backend.commands] == [remote.READ]


def test_a_policy_change_and_a_rule_added_by_hand_show_in_the_diff(tmp_path: Path) -> None:
    env = load(tmp_path, with_firewall("allow = [22, 2222, 8000]"))
    text = LISTED.replace("\t}\n}", "\t\ttcp dport 3306 accept\n\t}\n}")
    changes = firewall.diff(firewall.current_rules(text), env.firewall)  # type: ignore[arg-type]
    assert changes == ["- policy drop", "+ policy accept", "- tcp dport 3306 accept"]


def test_a_missing_nft_says_how_to_install_it(tmp_path: Path) -> None:
    env = drop_env(tmp_path)
    backend = FakeBackend("h")
    backend.fail_when("nft", exit_code=127, stderr="")
    with pytest.raises(StepFailed, match="apt-get install nftables"):
        firewall.apply(backend, env, env.hosts[0], dry_run=False)


def test_a_failed_apply_is_a_step_failure_naming_the_host(tmp_path: Path) -> None:
    env = drop_env(tmp_path)
    backend = listing("")
    backend.fail_when("nft -f -", stderr="Error: syntax error")
    with pytest.raises(StepFailed, match="syntax error") as error:
        firewall.apply(backend, env, env.hosts[0], dry_run=False)
    assert error.value.host == env.hosts[0].name and error.value.step == "firewall"


def test_without_a_firewall_nothing_is_sent(tmp_path: Path) -> None:
    env = load(tmp_path, BASE)
    backend = FakeBackend("h")
    assert firewall.apply(backend, env, env.hosts[0], dry_run=False) == firewall.FirewallOutcome(
        changed=False, diff=[], ruleset=""
    )
    assert backend.operations == []


def test_the_read_command_lists_only_our_table() -> None:
    script = remote.read_command().script
    assert "nft list table inet deploylib" in script
    assert "flush" not in script and "delete" not in script


# ---------------------------------------------------------------------------- ufw


def test_ufw_commands_replace_our_rules_and_deny_by_default(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        with_firewall(
            "tool = 'ufw'\npolicy = 'drop'\n"
            "allow = [22, 2222, { port = 8000, from = '10.0.0.0/8' }, { port = 53, proto = 'udp' }]"
        ),
    )
    backend = FakeBackend("h")
    outcome = firewall.apply(backend, env, env.hosts[0], dry_run=False)
    [command] = backend.commands
    lines = command.script.split(" &&\n")
    assert lines[1] == remote.UFW_REMOVE_OURS
    assert lines[2:] == [
        "ufw allow proto tcp to any port 22 comment deploylib",
        "ufw allow proto tcp to any port 2222 comment deploylib",
        "ufw allow proto tcp from 10.0.0.0/8 to any port 8000 comment deploylib",
        "ufw allow proto udp to any port 53 comment deploylib",
        "ufw default deny incoming",
        "ufw --force enable",
    ]
    assert outcome.changed and outcome.applied
    assert outcome.diff[0] == "+ ufw allow proto tcp to any port 22 comment deploylib"


def test_ufw_with_accept_only_adds_rules_and_a_dry_run_sends_nothing(tmp_path: Path) -> None:
    env = load(tmp_path, with_firewall("tool = 'ufw'\nallow = [80]"))
    backend = FakeBackend("h")
    outcome = firewall.apply(backend, env, env.hosts[0], dry_run=True)
    assert backend.operations == [] and not outcome.applied
    assert "default deny" not in outcome.ruleset and "enable" not in outcome.ruleset
    assert "ufw allow proto tcp to any port 80 comment deploylib" in outcome.ruleset


def test_a_missing_ufw_says_how_to_install_it(tmp_path: Path) -> None:
    env = load(tmp_path, with_firewall("tool = 'ufw'\nallow = [80]"))
    backend = FakeBackend("h")
    backend.fail_when("ufw", exit_code=127, stderr="")
    with pytest.raises(StepFailed, match="apt-get install ufw"):
        firewall.apply(backend, env, env.hosts[0], dry_run=False)
