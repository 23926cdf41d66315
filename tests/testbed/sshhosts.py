"""SSH test hosts: one network namespace each, with its own sshd, address, hostname and /srv.

    sudo python tests/testbed/sshhosts.py up 3 --dir /tmp/hosts     # prints the hosts, then waits
    (Ctrl-C tears them down)

Every host ``hN`` is a network namespace with a veth whose other end sits on a private bridge in
the root namespace. The bridge holds the .1 address of a private /24 that is chosen free on this
machine; hosts get .2, .3, ... There is no default route in a namespace and forwarding is left
off, so nothing a host sends can leave this machine. Each host runs ``sshd -D`` (its own host
key; root may log in with a key made here) in a private mount namespace where ``DIR/hN/srv`` is
bind-mounted on ``/srv``. Teardown stops every sshd by PID and deletes the namespaces and bridge.

Fault injection: ``cut(i)`` / ``mend(i)`` take a host's link down and up; ``kill_sshd(i)`` and
``start_sshd(i)`` stop and start its sshd.

Jump hosts: ``start_inner_sshd(i, port)`` runs a second sshd in host i's namespace listening on
127.0.0.1:port only (its own host key, hostname and /srv), so it can be reached only through
host i's sshd.

Needs root, iproute2 and openssh-server; ``missing()`` says what is absent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def missing() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "test SSH hosts need root (network namespaces)"
    for tool in (SSHD, shutil.which("ip"), shutil.which("ssh-keygen"), shutil.which("unshare")):
        if not tool or not Path(tool).exists():
            return "test SSH hosts need openssh-server, openssh-client, iproute2 and util-linux"
    return None


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _sh("ip", "-4", "route", "show", "table", "all").stdout + _sh("ip", "-4", "addr").stdout
    for _ in range(200):
        candidate = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(200) + 40}.{secrets.randbelow(250) + 1}.0/24"
        )
        if str(candidate.network_address)[: -len(".0")] + "." not in used:
            return candidate
    raise RuntimeError("no free private /24 found for test hosts")


@dataclass
class TestHost:
    index: int
    name: str
    namespace: str
    address: str
    veth: str
    root: Path
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    mounts: list[Path] = field(default_factory=list)

    @property
    def srv(self) -> Path:
        return self.root / "srv"

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"

    def exec_sessions(self) -> int:
        """Sessions (exec channels) started so far, counted from the sshd log (VERBOSE logs
        each: "Starting session: command ...")."""
        if not self.sshd_log.exists():
            return 0
        text = self.sshd_log.read_text(errors="replace")
        return len(re.findall(r"Starting session: ", text))

    def connections(self) -> int:
        """SSH logins accepted so far, counted from the sshd log."""
        if not self.sshd_log.exists():
            return 0
        return len(re.findall(r"Accepted publickey for", self.sshd_log.read_text(errors="replace")))


@dataclass
class InnerHost:
    """A second sshd inside ``outer``'s namespace on 127.0.0.1:``port`` (see
    ``TestHosts.start_inner_sshd``)."""

    outer: TestHost
    port: int
    root: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def srv(self) -> Path:
        return self.root / "srv"

    def known_hosts_line(self) -> str:
        """Its key as known_hosts names it when reached as 127.0.0.1:PORT."""
        kind, key = (self.root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def stop(self) -> None:
        """Stop this sshd by PID (its sessions die with the namespace's teardown)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            self.process = None


class TestHosts:
    """K SSH hosts in network namespaces. Use as a context manager, or ``up()`` / ``down()``."""

    def __init__(self, count: int, directory: Path) -> None:
        self.count = count
        self.dir = directory
        self.token = secrets.token_hex(2)
        self.bridge = f"dlbr{self.token}"
        self.subnet = _free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.hosts: list[TestHost] = []
        self.inner: list[InnerHost] = []
        self.client_key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> TestHosts:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        Path("/srv").mkdir(exist_ok=True)
        _sh(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "deploylib-test",
            "-f",
            str(self.client_key),
        )
        (self.dir / "root.keys").write_text(Path(f"{self.client_key}.pub").read_text())
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        known = []
        for index in range(1, self.count + 1):
            host = self._make_host(index)
            self.hosts.append(host)
            key = (host.root / "ssh_host_ed25519_key.pub").read_text().split()
            known.append(f"{host.address} {key[0]} {key[1]}\n")
        self.known_hosts.write_text("".join(known))
        for host in self.hosts:
            self.start_sshd(host.index, wait=False)
        for host in self.hosts:
            self._wait_for_port(host)

    def _make_host(self, index: int) -> TestHost:
        namespace = f"dl{self.token}h{index}"
        veth = f"dl{self.token}v{index}"
        address = str(self.subnet.network_address + 1 + index)
        root = self.dir / f"h{index}"
        (root / "srv").mkdir(parents=True, exist_ok=True)
        _sh("ip", "netns", "add", namespace)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        _sh("ip", "link", "set", f"{veth}p", "netns", namespace)
        _sh("ip", "-n", namespace, "link", "set", f"{veth}p", "name", "eth0")
        _sh("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _sh("ip", "-n", namespace, "link", "set", "eth0", "up")
        _sh("ip", "-n", namespace, "link", "set", "lo", "up")
        _sh("ip", "link", "set", veth, "master", self.bridge)
        _sh("ip", "link", "set", veth, "up")
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "ssh_host_ed25519_key"))
        self._write_sshd_config(root, "Port 22")
        return TestHost(index, f"h{index}", namespace, address, veth, root)

    def _write_sshd_config(self, root: Path, listen: str) -> None:
        (root / "sshd_config").write_text(
            "\n".join(
                [
                    listen,
                    f"HostKey {root / 'ssh_host_ed25519_key'}",
                    f"AuthorizedKeysFile {self.dir}/%u.keys",
                    "StrictModes no",
                    "UsePAM no",
                    "PidFile none",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )

    def down(self) -> None:
        for inner in self.inner:
            inner.stop()
        self.inner = []
        for host in self.hosts:
            self.kill_sshd(host.index)
            _sh("ip", "netns", "del", host.namespace, check=False)
            for mount in host.mounts:
                _sh("umount", "-l", str(mount), check=False)
        _sh("ip", "link", "del", self.bridge, check=False)
        self.hosts = []

    # ------------------------------------------------------------------ faults

    def host(self, index: int) -> TestHost:
        return self.hosts[index - 1]

    def start_sshd(self, index: int, *, wait: bool = True) -> None:
        host = self.host(index)
        # bash sources ~/.bashrc for commands run by sshd; this machine's root has a heavy
        # one (pyenv), a server account would not: the host sees it empty
        bin_dir = host.root / "bin"
        shadow = f"mount --bind {bin_dir} /usr/local/bin && " if bin_dir.is_dir() else ""
        script = (
            f"hostname {host.name} && mount --rbind {host.srv} /srv && {shadow}"
            "{ [ ! -f /root/.bashrc ] || mount --bind /dev/null /root/.bashrc; } && "
            f"exec {SSHD} -D -e -f {host.root / 'sshd_config'}"
        )
        log = host.sshd_log.open("ab")
        host.process = subprocess.Popen(
            ["ip", "netns", "exec", host.namespace, "unshare", "--uts", "sh", "-c", script],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        host.pid = host.process.pid
        if wait:
            self._wait_for_port(host)

    def start_inner_sshd(self, index: int, port: int = 2222) -> InnerHost:
        """A second sshd in host ``index``'s namespace that listens on 127.0.0.1:``port`` only:
        reachable only through that host's sshd (which then serves as a jump host). It has its
        own host key, hostname (``hN-inner``) and /srv (``DIR/hN-inner/srv``); root logs in
        with the client key. Its key is not added to known_hosts: ``InnerHost.known_hosts_line``.
        """
        outer = self.host(index)
        root = self.dir / f"{outer.name}-inner"
        (root / "srv").mkdir(parents=True, exist_ok=True)
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "ssh_host_ed25519_key"))
        self._write_sshd_config(root, f"ListenAddress 127.0.0.1:{port}")
        script = (
            f"hostname {outer.name}-inner && mount --rbind {root / 'srv'} /srv && "
            "{ [ ! -f /root/.bashrc ] || mount --bind /dev/null /root/.bashrc; } && "
            f"exec {SSHD} -D -e -f {root / 'sshd_config'}"
        )
        log_path = root / "sshd.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", outer.namespace, "unshare", "--uts", "sh", "-c", script],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        inner = InnerHost(outer, port, root, process)
        self.inner.append(inner)
        deadline = time.monotonic() + 10
        while "Server listening on" not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"inner sshd did not come up: {log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        return inner

    def kill_sshd(self, index: int) -> None:
        """Stop a host's sshd and every session it started (all of them are in its namespace)."""
        host = self.host(index)
        for pid in self._pids_in(host.namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if host.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.process.wait(timeout=5)
        host.process = None
        host.pid = None

    def small_disk(self, index: int, directory: str, size: str) -> None:
        """Give ``/srv/DIRECTORY`` on that host a tmpfs of ``size`` (e.g. "1m"), to fill up."""
        host = self.host(index)
        mount = host.srv / directory
        mount.mkdir(parents=True, exist_ok=True)
        _sh("mount", "-t", "tmpfs", "-o", f"size={size}", "deploylib-test", str(mount))
        host.mounts.append(mount)
        self.kill_sshd(index)  # its mount namespace was made before: start it anew
        self.start_sshd(index)

    def fake_command(self, index: int, name: str, script: str) -> None:
        """Put a command first on that host's PATH (its own /usr/local/bin), e.g. a broken
        ``sha256sum``; the host's sshd restarts to see it."""
        host = self.host(index)
        path = host.root / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\n" + script + "\n")
        path.chmod(0o755)
        self.kill_sshd(index)
        self.start_sshd(index)

    def sessions(self, index: int) -> list[int]:
        """The processes in that host's namespace besides its sshd daemons: what the sessions
        started (shells, commands, and what they left running)."""
        daemons = {self.host(index).pid} | {
            inner.process.pid
            for inner in self.inner
            if inner.outer is self.host(index) and inner.process is not None
        }
        return [pid for pid in self._pids_in(self.host(index).namespace) if pid not in daemons]

    def wait_idle(self, timeout: float = 30) -> dict[str, list[int]]:
        """Wait until no host runs anything but its sshd (every command, including one a
        controller gave up on, has ended); return what still runs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            busy = {h.name: self.sessions(i) for i, h in enumerate(self.hosts, 1)}
            busy = {name: pids for name, pids in busy.items() if pids}
            if not busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.05)

    def cut(self, index: int) -> None:
        """Take the host's link down: packets vanish, nothing answers (no RST)."""
        _sh("ip", "link", "set", self.host(index).veth, "down")

    def mend(self, index: int) -> None:
        _sh("ip", "link", "set", self.host(index).veth, "up")

    # ------------------------------------------------------------------ helpers

    def _pids_in(self, namespace: str) -> list[int]:
        return [int(p) for p in _sh("ip", "netns", "pids", namespace, check=False).stdout.split()]

    def _wait_for_port(self, host: TestHost, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host.address, 22), timeout=0.5) as conn:
                    conn.settimeout(1)
                    if conn.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(
            f"sshd of {host.name} ({host.address}) did not come up: "
            f"{host.sshd_log.read_text(errors='replace')[-2000:]}"
        )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="bring up SSH test hosts until Ctrl-C")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("count", type=int)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(reason)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with TestHosts(args.count, args.dir) as hosts:
        print(f"client key: {hosts.client_key}\nknown_hosts: {hosts.known_hosts}")
        for host in hosts.hosts:
            print(f"{host.name}: root@{host.address} (sshd pid {host.pid}, /srv = {host.srv})")
        print("Ctrl-C to tear down")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
