"""A real Prometheus Pushgateway on 127.0.0.1 for the metrics tests, and a stand-in for it.

``RealPushgateway`` runs ``/usr/bin/prometheus-pushgateway`` (Debian's
``prometheus-pushgateway`` package) on a free port of 127.0.0.1, its persistence file and log
in a temp directory; ``stop()`` ends it by its PID and ``start()`` starts it again on the same
port and file (what it had is read back from the file). ``FakeGateway`` answers in the test's
process with canned answers and records every request (method, path, body).

Everything listens on 127.0.0.1 only and is stopped by the test.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.testbed.daemon import Daemon

PUSHGATEWAY = Path("/usr/bin/prometheus-pushgateway")

#: a prometheus.yml scraping the gateway at {port} every second, its labels as pushed
SCRAPE_GATEWAY = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


class RealPushgateway(Daemon):
    """``prometheus-pushgateway`` on 127.0.0.1:``port``, persisting to ``directory``; ``stop``
    then ``start`` runs it again on the same port and file."""

    name = "pushgateway"

    def argv(self) -> list[str]:
        return [
            str(PUSHGATEWAY),
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--persistence.file={self.directory / 'persistence'}",
            "--persistence.interval=1s",
            "--log.level=warn",
        ]


class FakeGateway:
    """Answers ``GET /api/v1/metrics`` with ``api`` (status, body) and a ``PUT`` with
    ``put_status``, keeping each request as (method, path, body) and its headers."""

    def __init__(self) -> None:
        self.api: tuple[int, str] = (200, json.dumps({"status": "success", "data": []}))
        self.put_status = 200
        self.requests: list[tuple[str, str, bytes]] = []
        lock = threading.Lock()
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                with lock:
                    gateway.requests.append(("GET", self.path, b""))
                    gateway.headers.append(dict(self.headers))
                self._answer(*gateway.api)

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    gateway.requests.append(("PUT", self.path, body))
                    gateway.headers.append(dict(self.headers))
                self._answer(gateway.put_status, "")

        self.headers: list[dict[str, str]] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.requests]
