"""Prometheus on 127.0.0.1 for the tests of the ``prometheus`` check.

``PrometheusAPI`` stands in for the query API: it answers every request with the canned
``answer`` (status and JSON) and records each request's path as it arrived. ``MetricsApp`` is
a small app whose requests are counted by status and exposed at ``/metrics`` in Prometheus's
text format; ``RealPrometheus`` runs ``/usr/bin/prometheus`` (Debian's ``prometheus``
package) scraping it every second, with its own config and storage in a temp directory.

Everything listens on 127.0.0.1 only and is stopped by the test (the server by its PID).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.testbed.daemon import Daemon

PROMETHEUS = Path("/usr/bin/prometheus")


def vector(*samples: tuple[Mapping[str, str], str]) -> str:
    """An instant query's answer holding ``samples`` (labels, value as the API writes it)."""
    result = [{"metric": dict(labels), "value": [1712000000.5, value]} for labels, value in samples]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


def scalar(value: str) -> str:
    return json.dumps(
        {"status": "success", "data": {"resultType": "scalar", "result": [1712000000.5, value]}}
    )


def api_error(kind: str, message: str) -> str:
    return json.dumps({"status": "error", "errorType": kind, "error": message})


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Serving:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 in a thread of the test process."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port: int = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
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


class PrometheusAPI(_Serving):
    """Answers every GET with ``answer`` (or the next of ``script``, while it lasts) and records
    the path of each (as sent)."""

    def __init__(self) -> None:
        self.answer: tuple[int, str] = (200, vector())
        self.script: list[tuple[int, str]] = []
        self.paths: list[str] = []
        lock = threading.Lock()
        api = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                with lock:
                    api.paths.append(self.path)
                    status, body = api.script.pop(0) if api.script else api.answer
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    def queries(self) -> list[str]:
        """The ``query`` parameter of each request, decoded."""
        return [
            urllib.parse.parse_qs(urllib.parse.urlsplit(p).query)["query"][0] for p in self.paths
        ]


class MetricsApp(_Serving):
    """``GET /`` answers 200, or 500 once ``failing`` is set; ``GET /metrics`` is the count of
    those requests by status, as the counter ``app_requests_total{status="..."}``. As with
    client libraries, a status has a series from its first request on: before the first error
    there is no ``status="500"`` series at all."""

    def __init__(self) -> None:
        self.failing = threading.Event()
        self.counts: Counter[str] = Counter()
        lock = threading.Lock()
        app = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    with lock:
                        counts = dict(app.counts)
                    text = "# HELP app_requests_total Requests answered, by status.\n"
                    text += "# TYPE app_requests_total counter\n"
                    text += "".join(
                        f'app_requests_total{{status="{status}"}} {n}\n'
                        for status, n in sorted(counts.items())
                    )
                    self._send(200, text, "text/plain; version=0.0.4")
                    return
                status = 500 if app.failing.is_set() else 200
                with lock:
                    app.counts[str(status)] += 1
                self._send(status, "error\n" if status == 500 else "ok\n", "text/plain")

            def _send(self, status: int, text: str, content_type: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


class Traffic:
    """Requests to ``GET /`` of an app on loopback, one every ``every`` seconds, in a thread;
    bounded: at most ``max_requests``, for at most ``max_seconds``, until stopped."""

    def __init__(
        self,
        port: int,
        *,
        every: float = 0.05,
        max_requests: int = 5000,
        max_seconds: float = 240,
    ) -> None:
        self.port, self.every = port, every
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="traffic")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        end = time.monotonic() + self.max_seconds
        while self.sent < self.max_requests and time.monotonic() < end:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection.request("GET", "/")
                connection.getresponse().read()
            connection.close()
            self.sent += 1
            if self.stop.wait(self.every):
                return


CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["127.0.0.1:{app_port}"]
"""


class RealPrometheus(Daemon):
    """``/usr/bin/prometheus`` on 127.0.0.1 scraping the app at ``app_port`` every second (or
    as ``config``, a prometheus.yml, says); its config, storage and log in ``directory``.
    Stopped by its PID on exit."""

    name = "prometheus"

    def __init__(self, directory: Path, app_port: int = 0, *, config: str | None = None) -> None:
        super().__init__(directory)
        text = config if config is not None else CONFIG.format(app_port=app_port)
        (directory / "prometheus.yml").write_text(text)

    def argv(self) -> list[str]:
        return [
            str(PROMETHEUS),
            f"--config.file={self.directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def values(self, query: str) -> list[float]:
        """The sample values of an instant query (empty: no data, or no answer yet)."""
        return [value for _, value in self.samples(query)]

    def samples(self, query: str) -> list[tuple[dict[str, str], float]]:
        """The labels and value of each sample of an instant query (a scalar has no labels)."""
        status, body = self.get("/api/v1/query?query=" + urllib.parse.quote(query, safe=""))
        if status != 200:
            return []
        data = json.loads(body)["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(dict(sample["metric"]), float(sample["value"][1])) for sample in data["result"]]
