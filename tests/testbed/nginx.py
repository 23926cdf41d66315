"""A real nginx on 127.0.0.1 for the proxy tests, started from its own prefix and stopped by PID.

Its one ``upstream app { include <upstream file>; }`` block takes its servers from the file a
blue-green deploy rewrites; ``check`` and ``reload`` are the commands that strategy runs."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.testbed.load import free_port

CONF = """\
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{
        include {upstream};
{keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class Nginx:
    prefix: Path
    conf: Path
    upstream: Path
    port: int
    pid: int

    @property
    def check(self) -> str:
        return f"{self.binary()} -p {shlex.quote(str(self.prefix))} -c {self.conf} -t -q"

    @property
    def reload(self) -> str:
        return f"{self.binary()} -p {shlex.quote(str(self.prefix))} -c {self.conf} -s reload"

    @staticmethod
    def binary() -> str:
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def workers(self) -> list[int]:
        """The PIDs of its worker processes (they change at every reload)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []


@contextmanager
def nginx(
    root: Path,
    first_port: int | None = None,
    *,
    servers: Sequence[str] = (),
    upstream_keepalive: bool = False,
) -> Iterator[Nginx]:
    """nginx in ``root``, its upstream file naming ``servers`` (``address:port``), or
    127.0.0.1:``first_port`` until a blue-green deploy rewrites it."""
    binary = Nginx.binary()
    if not Path(binary).exists():
        pytest.skip("nginx is not installed (.ci/run installs nginx-light)")
    prefix = root / "nginx"
    prefix.mkdir(parents=True)
    upstream = prefix / "upstream" / "app.conf"
    upstream.parent.mkdir()
    named = list(servers) or [f"127.0.0.1:{first_port}"]
    upstream.write_text("".join(f"server {server};\n" for server in named))
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        CONF.format(
            prefix=prefix,
            upstream=upstream,
            port=port,
            keepalive="        keepalive 16;" if upstream_keepalive else "",
        )
    )
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    )
    try:
        deadline = time.monotonic() + 10
        while not (prefix / "nginx.pid").exists():
            assert process.poll() is None and time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.02)
        yield Nginx(prefix, conf, upstream, port, process.pid)
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
