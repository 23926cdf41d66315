"""known_hosts is read once for a run, whatever its size and however many hosts it opens, and
what is read checks host keys as paramiko's own reading does: hashed names, several names on a
line, comments and broken lines."""

from __future__ import annotations

from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeys

from deploylib.backends.ssh.host_keys import KnownHostsFile, check_host_keys


def hashed_file(path: Path, count: int) -> tuple[paramiko.PKey, paramiko.PKey]:
    """``count`` hashed entries for host0..host{count-1}, then another key under a plain
    name list, a comment and a broken line; returns the keys of host7 and web1."""
    keys = [paramiko.RSAKey.generate(1024) for _ in range(2)]
    lines = []
    for index in range(count):
        name = HostKeys.hash_host(f"host{index}")
        key = keys[0]
        lines.append(f"{name} {key.get_name()} {key.get_base64()}")
    web = keys[1]
    lines += [
        "# a comment",
        f"web1,web2,[web3]:2222 {web.get_name()} {web.get_base64()}",
        "a broken line",
        "",
    ]
    path.write_text("\n".join(lines))
    return keys[0], web


def test_the_file_is_read_once_per_run(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    hashed_file(path, 3)
    read = KnownHostsFile()
    first = read.entries(path)
    with path.open("a") as file:  # changed after the first read: the run keeps what it read
        file.write(f"late {paramiko.RSAKey.generate(1024).get_name()} AAAA\n")
    assert len(read.entries(path)) == len(first) == 4  # 3 hashed, 1 with three names
    assert read.entries(tmp_path / "missing") == []


def test_what_is_read_checks_keys_as_paramiko_does(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    hosts_key, web = hashed_file(path, 1000)
    read = KnownHostsFile()
    for accept_new in (False, True):
        ours = paramiko.SSHClient()
        check_host_keys(ours, path, accept_new=accept_new, read=read)
        theirs = paramiko.SSHClient()
        check_host_keys(theirs, path, accept_new=accept_new)  # paramiko's own load
        for name in ("host7", "host999", "web2", "[web3]:2222", "host1000", "nobody"):
            mine = ours.get_host_keys().lookup(name)
            paramikos = theirs.get_host_keys().lookup(name)
            assert (mine is None) == (paramikos is None), name
            if mine is not None and paramikos is not None:
                assert dict(mine) == dict(paramikos), name
    assert ours.get_host_keys().lookup("host7") is not None
    assert ours.get_host_keys().lookup("host7")[hosts_key.get_name()] == hosts_key
    assert ours.get_host_keys().lookup("web1")[web.get_name()] == web
