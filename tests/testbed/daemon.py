"""A server binary a test runs on 127.0.0.1 (Prometheus, the Pushgateway): started with its
output in a log file, asked over HTTP, waited for by polling, stopped by its PID."""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.testbed.load import free_port


class Daemon:
    """One server process on 127.0.0.1:``port``, its files in ``directory``, its output in
    ``log``; a context manager that stops it on exit."""

    #: its name in failure messages
    name = "server"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self) -> Sequence[str]:
        """The command line that starts it on ``port``."""
        raise NotImplementedError

    def start(self, *, timeout: float = 60) -> None:
        """Start it and wait until ``/-/ready`` answers 200."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv()), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self.wait_until(lambda: self.get("/-/ready")[0] == 200, "ready", timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """End it by its PID: SIGTERM (it writes what it keeps), SIGKILL after 20 s."""
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
        """The status and body of a GET of ``path`` (0 and "" when nothing answers)."""
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
        seconds or if the process exits."""
        end = time.monotonic() + timeout
        while not ready():
            exited = self.process is not None and self.process.poll() is not None
            if exited or time.monotonic() > end:
                log = self.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{self.name} never {what} (exited: {exited}):\n{log}")
            time.sleep(0.1)
