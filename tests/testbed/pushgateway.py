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
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.testbed.load import free_port

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


class RealPushgateway:
    """``prometheus-pushgateway`` on 127.0.0.1:``port``, persisting to ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "pushgateway.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(PUSHGATEWAY),
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--persistence.file={self.directory / 'persistence'}",
                    "--persistence.interval=1s",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self.wait_until(lambda: self.get("/-/ready")[0] == 200, "ready")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End the gateway by its PID (SIGTERM: it writes its persistence file first)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def get(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException):
            return 0, ""
        finally:
            connection.close()

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
        """Poll ``ready`` every 0.1 s until it holds; fail, with the log, after ``timeout``
        seconds or if the gateway exits."""
        end = time.monotonic() + timeout
        while not ready():
            exited = self.process is not None and self.process.poll() is not None
            if exited or time.monotonic() > end:
                log = self.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"pushgateway never {what} (exited: {exited}):\n{log}")
            time.sleep(0.1)


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
