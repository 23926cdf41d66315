"""What a deploy shows while it runs: a failed HTTP check says what the app answered (secrets
masked), attempts with attempts left are a wait, not a failure, and ``run(name=...)`` labels the
step's row."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import BASIC_PIPELINE, Project, start_cli

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


def run_step_pipeline(command: str) -> str:
    return BASIC_PIPELINE.replace('run("test ! -e FAIL_PREPARE", cwd="{release_path}")', command)


def test_verbose_streams_each_line_as_it_arrives_with_host_and_step(project: Project) -> None:
    """The step's first line is shown while the step is still running (it waits for a file
    the test writes only once it saw that line); secrets masked, control characters gone."""
    project.write(".env", f"TOKEN={SECRET}\n")
    go = project.root / "go"
    project.write(
        "pipelines/web.py",
        run_step_pipeline(
            f"run(\"echo first-line; echo token $TOKEN; printf 'red\\\\033[31mtext\\\\n' >&2; "
            f'while [ ! -e {go} ]; do sleep 0.05; done; echo second-line", name="talk")'
        ),
    )
    process = start_cli(project.root, "deploy", "--env", "dev", "--verbose")
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    for line in process.stdout:
        seen.append(line)
        if "first-line" in line:
            go.touch()  # only now may the step end
        assert time.monotonic() < deadline, "".join(seen)
    assert process.wait(timeout=60) == 0, "".join(seen)
    text = "".join(seen)
    assert "local talk | first-line" in text and "local talk | second-line" in text
    assert "token ***" in text and SECRET not in text
    assert "\x1b" not in text and "redtext" in text.replace("[31m", "")


def test_a_failing_command_shows_its_last_20_lines_without_verbose(project: Project) -> None:
    project.write("pipelines/web.py", run_step_pipeline('run("seq 1 50; exit 3", name="count")'))
    failed = project.cli("deploy", "--env", "dev")
    assert failed.returncode == 1
    said = failed.stdout + failed.stderr
    assert "count" in said and "local" in said and "exit 3" in said
    shown = {int(w) for w in said.split() if w.isdigit() and 1 <= int(w) <= 50}
    assert set(range(31, 51)) <= shown and 30 not in shown and 12 not in shown
