"""known_hosts read once per run against once per connection, in process (no SSH):

    python benchmarks/known_hosts.py [--entries 1000] [--hosts 20]

A hashed known_hosts file of ``--entries`` lines; for each of ``--hosts`` connections, the time
to prepare a paramiko client's host keys as deploylib did before (paramiko's ``load`` for each
connection) and as it does now (the run's ``KnownHostsFile``, read on the first connection).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploylib.backends.ssh.host_keys import KnownHostsFile, check_host_keys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=20)
    args = parser.parse_args()
    key = paramiko.RSAKey.generate(1024)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "known_hosts"
        path.write_text(
            "".join(
                f"{HostKeys.hash_host(f'host{i}')} {key.get_name()} {key.get_base64()}\n"
                for i in range(args.entries)
            )
        )
        started = time.perf_counter()
        for _ in range(args.hosts):
            check_host_keys(paramiko.SSHClient(), path, accept_new=False)
        each = time.perf_counter() - started
        read = KnownHostsFile()
        started = time.perf_counter()
        for _ in range(args.hosts):
            check_host_keys(paramiko.SSHClient(), path, accept_new=False, read=read)
        once = time.perf_counter() - started
    print(f"{args.entries} hashed entries, {args.hosts} connections")
    print(
        f"| read for each connection | {each:.2f} s | {each / args.hosts * 1000:.0f} ms per host |"
    )
    print(f"| read once for the run | {once:.3f} s | {once / args.hosts * 1000:.1f} ms per host |")


if __name__ == "__main__":
    main()
