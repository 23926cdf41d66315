"""Specifies deploylib.actions: choosing hosts by name and role."""

from __future__ import annotations

import pytest

from deploylib.actions import select_hosts
from deploylib.errors import ConfigError
from deploylib.hosts import Host
from deploylib.testing import environment


def test_select_hosts_by_name_and_role() -> None:
    env = environment(
        hosts=[
            Host("web1", "a.example", roles=("web",)),
            Host("db1", "b.example", roles=("db",)),
            Host("web2", "c.example", roles=("web", "cron")),
        ]
    )
    assert [h.name for h in select_hosts(env, None, None)] == ["web1", "db1", "web2"]
    assert [h.name for h in select_hosts(env, "web2,b.example", None)] == ["db1", "web2"]
    assert [h.name for h in select_hosts(env, None, "web")] == ["web1", "web2"]
    assert [h.name for h in select_hosts(env, "web1,web2", "cron")] == ["web2"]
    with pytest.raises(ConfigError, match="--roles"):
        select_hosts(env, None, "nope")
