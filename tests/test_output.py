"""What a deploy shows while it runs: a failed HTTP check says what the app answered (secrets
masked), attempts with attempts left are a wait, not a failure, and ``run(name=...)`` labels the
step's row."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import BASIC_PIPELINE, Project

SECRET = "app-db-passw0rd-xyz"


@pytest.fixture
def sick_app() -> Iterator[str]:
    """An app on loopback that answers 500 and says why, secret included, then 2 KB more."""

    class Sick(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"database is down (password {SECRET} refused)\n".encode() + b"x" * 2048
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sick)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


def test_a_failing_http_check_shows_the_body_and_waits_before_it_fails(
    project: Project, sick_app: str
) -> None:
    project.write(".env", f"DB_PASSWORD={SECRET}\n")
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace("command\n", "command, http\n")
        .replace(
            'verify(command("test ! -e {current_path}/BROKEN"), attempts=2, wait=0)',
            f'verify(http("{sick_app}"), attempts=3, wait=0)',
        )
        .replace('run("test ! -e FAIL_PREPARE"', 'run("true", name="assets"'),
    )
    result = project.cli("deploy", "--env", "dev")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "  assets     local" in out  # the row is labelled by the step's name
    lines = [line for line in out.splitlines() if "attempt" in line]
    assert "attempt 1: waiting (" in lines[0] and "✗" not in lines[0], lines
    assert "attempt 2: waiting (" in lines[1], lines
    assert "attempt 3: ✗" in lines[2], lines
    assert "status 500, expected 200; body: database is down (password *** refused)" in out
    assert "x" * 300 not in out  # the first 200 bytes, not the whole body
    assert SECRET not in out
