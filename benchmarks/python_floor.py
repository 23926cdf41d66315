"""The Python floor for benchmarks/fleet.py: the same deploy as deploylib's, by hand, with what a
Python client can do at least — one paramiko connection and ONE exec channel per host, every
host in its own thread, the artifact streamed into one remote script.

    python benchmarks/python_floor.py [--tuned] APP_DIR RELEASE KEY KNOWN_HOSTS DEPLOY_TO HOST...

With ``--tuned``, the connection gets what deploylib's gets (backends/ssh/tcp.py), written
here again so the floor stays on its own: TCP_NODELAY before the handshake, an ACK sent as soon
as data arrived, AES-GCM offered first. Without it, paramiko's defaults.

Builds the artifact (tar -czf of APP_DIR) once, then per host, in one script fed the artifact on
its standard input: lock (mkdir), unpack into releases/RELEASE, link shared log and .env,
REVISION, switch current by symlink + mv -T, verify, append to the release log, keep 3, unlock.
Prints nothing; exits non-zero if any host failed. No checks beyond the work itself: a floor,
not a tool.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import paramiko

SCRIPT = """\
set -e
to={to}; release={release}
mkdir -p $to/.deploylib $to/releases $to/shared/log
mkdir $to/.deploylib/lock
touch $to/shared/.env && chmod 600 $to/shared/.env
r=$to/releases/$release
mkdir -p $r
tar -xzf - -C $r
rm -rf $r/log $r/.env
ln -s $to/shared/log $r/log
ln -s $to/shared/.env $r/.env
echo "$release floor" > $r/REVISION
ln -sfn releases/$release $to/.current-$release
mv -T $to/.current-$release $to/current
test -f $to/current/REVISION
echo '{{"release": "'$release'", "outcome": "success"}}' >> $to/.deploylib/releases.jsonl
cd $to/releases && ls -1 | sort | head -n -3 | xargs -r rm -rf
rm -rf $to/.deploylib/lock
"""


class QuickAck(socket.socket):
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


def tuned_transport(sock: socket.socket, **kwargs: Any) -> paramiko.Transport:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    timeout = sock.gettimeout()
    quick = QuickAck(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    transport = paramiko.Transport(quick, **kwargs)
    options = transport.get_security_options()
    gcm = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    options.ciphers = gcm + tuple(c for c in options.ciphers if c not in gcm)
    return transport


def deploy_one(
    host: str,
    artifact: bytes,
    script: str,
    key: str,
    known_hosts: str,
    errors: list[str],
    tuned: bool = False,
) -> None:
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            host, username="root", key_filename=key, look_for_keys=False, allow_agent=False,
            timeout=10, transport_factory=tuned_transport if tuned else None,
        )  # fmt: skip
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=10)
        channel.exec_command(script)
        # in blocks: paramiko's sendall copies what is left of its argument after each packet
        for start in range(0, len(artifact), 1 << 16):
            channel.sendall(artifact[start : start + (1 << 16)])
        channel.shutdown_write()
        status = channel.recv_exit_status()
        if status != 0:
            errors.append(f"{host}: exit {status}: {channel.recv_stderr(65536).decode()}")
    except Exception as exc:  # a floor reports, it does not recover
        errors.append(f"{host}: {exc}")
    finally:
        client.close()


def main() -> None:
    args = sys.argv[1:]
    tuned = args[:1] == ["--tuned"]
    app, release, key, known_hosts, deploy_to, *hosts = args[1:] if tuned else args
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "artifact.tar.gz"
        subprocess.run(["tar", "-czf", str(path), "-C", app, "."], check=True)
        artifact = path.read_bytes()
    script = SCRIPT.format(to=deploy_to, release=release)
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=deploy_one, args=(h, artifact, script, key, known_hosts, errors, tuned)
        )
        for h in hosts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit("\n".join(errors))


if __name__ == "__main__":
    main()
