"""``exec`` and ``logs`` on this machine (hosts = ["local"]), and the pieces they are made of:
the commands as data, lines cut and cleaned, exit statuses, and backends streaming output."""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploylib.backends.fake import FakeBackend
from deploylib.backends.local import LocalBackend
from deploylib.commands import Command, Result
from deploylib.errors import ConfigError
from deploylib.remote import oneoff
from deploylib.remote.layout import Layout
from deploylib.secrets import Redactor, Secret
from deploylib.streaming import HostLines, Streamed
from tests.conftest import Project, program

# a command a shell would have to read with care: quotes of both kinds, substitutions,
# arithmetic, braces and parentheses alone, a comment, a line continuation, newlines
HOSTILE = """x='it'"'"'s'; echo "$x" "$(echo sub $((1 + 2)))" `echo back`
echo "two
lines" '}' ')' \\; # a comment
printf '%s|%s\\n' a \\
  b; echo "$0" >/dev/null; echo '"' "'" '$HOME'"""


def expected_of(script: str) -> list[str]:
    """What ``script`` prints when a shell runs it, as lines."""
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def lines_of(text: str, host: str = "local") -> list[str]:
    prefix = f"{host} | "
    return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture
def deployed(project: Project) -> Project:
    project.write(".env", "API_TOKEN=tok-5ecret-value\n")
    done = project.cli("deploy", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    return project


# ---------------------------------------------------------------------------- exec, local


def test_exec_runs_in_current_with_the_env_file_and_prefixes_each_line(
    deployed: Project,
) -> None:
    done = deployed.cli(
        "exec", "--env", "dev", "--", 'pwd; echo "token=$API_TOKEN"; echo oops >&2; exit 3'
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert lines_of(done.stdout) == [str(deployed.target / "current"), "token=***"]
    assert "local | oops" in done.stderr.splitlines()
    assert "tok-5ecret-value" not in done.stdout + done.stderr
    assert "failed on local (exit 3)" in done.stderr


def test_exec_runs_a_hostile_command_exactly_as_given(deployed: Project) -> None:
    done = deployed.cli("exec", "--env", "dev", "--", HOSTILE)
    assert done.returncode == 0, done.stderr
    assert lines_of(done.stdout) == expected_of(HOSTILE)


def test_several_words_after_the_dashes_are_a_program_and_its_arguments(
    deployed: Project,
) -> None:
    done = deployed.cli("exec", "--env", "dev", "--", "printf", "%s|", "a b", "$(x)", "'")
    assert done.returncode == 0, done.stderr
    assert lines_of(done.stdout) == ["a b|$(x)|'|"]


def test_exec_puts_the_releases_venv_first_on_path(deployed: Project) -> None:
    tool = deployed.target / "current" / ".venv" / "bin" / "where-am-i"
    tool.parent.mkdir(parents=True)
    tool.write_text('#!/bin/sh\necho "venv tool: $(command -v where-am-i)"\n')
    tool.chmod(0o755)
    done = deployed.cli("exec", "--env", "dev", "--", "where-am-i")
    assert done.returncode == 0, done.stderr
    assert lines_of(done.stdout) == [f"venv tool: {deployed.target}/current/.venv/bin/where-am-i"]


def test_exec_without_a_release_says_so(project: Project) -> None:
    done = project.cli("exec", "--env", "dev", "--", "true")
    assert done.returncode == 1
    assert f"local | deploylib: no release is live on this host: {project.target}/current" in (
        done.stderr
    )


def test_exec_stops_at_the_timeout(deployed: Project) -> None:
    started = time.monotonic()
    done = deployed.cli("exec", "--env", "dev", "--timeout", "0.5", "--", "echo up; sleep 30")
    assert time.monotonic() - started < 20
    assert done.returncode == 124, done.stdout + done.stderr
    assert lines_of(done.stdout) == ["up"]
    assert "local | deploylib: timed out after 0.5 s" in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "no command to run"),
        (("--",), "no command to run"),
        (("--command", "true", "--", "true"), "not both"),
        (("--hosts", "web9", "--", "true"), "'web9' is not in environment 'dev'"),
        (("--roles", "db", "--", "true"), "no host of environment 'dev' has role"),
        (("--timeout", "soon", "--", "true"), "not a number of seconds"),
    ],
)
def test_exec_usage_errors_exit_2_before_any_host(
    deployed: Project, args: tuple[str, ...], says: str
) -> None:
    done = deployed.cli("exec", "--env", "dev", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and not done.stdout


def test_exec_of_an_unknown_environment_exits_2(deployed: Project) -> None:
    done = deployed.cli("exec", "--env", "nope", "--", "true")
    assert done.returncode == 2 and "unknown environment 'nope'" in done.stderr


def test_exec_through_invoke_takes_the_command_as_an_option(deployed: Project) -> None:
    deployed.write("tasks.py", "from deploylib.tasks import ns\n")
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "exec", "--env", "dev", "--command", "echo $((6 * 7))"],
        cwd=deployed.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines_of(done.stdout) == ["42"]


def test_ctrl_c_stops_the_command_and_exits_130(deployed: Project) -> None:
    marker = deployed.target / "started"
    process = subprocess.Popen(
        program("exec", "--env", "dev", "--", f"touch {marker}; sleep 60; touch {marker}.late"),
        cwd=deployed.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert marker.exists(), process.communicate()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130, out + err
    assert not _running(str(marker))


# ---------------------------------------------------------------------------- logs, local


def test_logs_shows_the_last_lines_of_every_log(deployed: Project) -> None:
    log = deployed.target / "shared" / "log"
    (log / "app.log").write_text("".join(f"app {i}\n" for i in range(1, 201)))
    (log / "worker.log").write_text("w1\nw2\n")
    (log / "notes.txt").write_text("not a log\n")
    done = deployed.cli("logs", "--env", "dev", "--lines", "2")
    assert done.returncode == 0, done.stderr
    assert lines_of(done.stdout) == [
        "==> app.log <==",
        "app 199",
        "app 200",
        "",
        "==> worker.log <==",
        "w1",
        "w2",
    ]
    default = deployed.cli("logs", "--env", "dev", "log/app.log")
    assert lines_of(default.stdout) == [f"app {i}" for i in range(101, 201)]


def test_logs_refuses_a_path_outside_deploy_to(deployed: Project) -> None:
    for path in ("../../etc/passwd", "/etc/passwd", "log/../../../x"):
        done = deployed.cli("logs", "--env", "dev", "--", path)
        assert done.returncode == 2, (path, done.stdout + done.stderr)
        assert "is outside" in done.stderr


def test_logs_of_a_missing_file_fails_for_that_host(deployed: Project) -> None:
    done = deployed.cli("logs", "--env", "dev", "log/none.log")
    assert done.returncode == 1
    assert "local | tail: " in done.stderr


def test_logs_follow_shows_new_lines_and_ctrl_c_ends_it(deployed: Project) -> None:
    log = deployed.target / "shared" / "log" / "follow-me.log"
    log.write_text("old\n")
    process = subprocess.Popen(
        program("logs", "--env", "dev", "--follow", "--lines", "1", "log/follow-me.log"),
        cwd=deployed.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = _Reader(process)
    seen.wait_for("local | old")
    with log.open("a") as file:
        file.write("new line\n")
    seen.wait_for("local | new line")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    assert time.monotonic() - started < 10
    assert process.returncode == 0, seen.text()
    assert not _running(str(log))


class _Reader:
    """A process's stdout read in a thread, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        self.thread = threading.Thread(target=lambda: self.lines.extend(stdout), daemon=True)
        self.thread.start()

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, line: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while line + "\n" not in self.lines and time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        assert line + "\n" in self.lines, (self.text(), self.process.poll())


def _running(word: str) -> list[int]:
    """The processes of this machine whose command line holds ``word``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if word in cmdline:
                found.append(int(entry.name))
    return found


# ---------------------------------------------------------------------------- the pieces


def test_the_exec_command_keeps_the_script_whole_and_secrets_off_its_line() -> None:
    command = oneoff.exec_command(
        Layout("/srv/app"), HOSTILE, {"TOKEN": Secret("s3cret-value")}, timeout=5
    )
    assert "s3cret-value" not in command.full_line
    assert command.env == {"TOKEN": Secret("s3cret-value")}
    assert command.timeout == 5 and not command.guard and not command.cwd
    assert command.full_line.endswith(f"eval {shlex.quote(HOSTILE)}")


def test_one_word_is_a_script_and_several_are_argv() -> None:
    assert oneoff.command_of(None, ["echo $HOME && ls"]) == "echo $HOME && ls"
    assert oneoff.command_of(None, ["ls", "my dir", "$x"]) == "ls 'my dir' '$x'"
    assert oneoff.command_of("uptime") == "uptime"
    for command, words in ((None, ()), ("  ", ()), ("ls", ("ls",))):
        with pytest.raises(ConfigError):
            oneoff.command_of(command, words)


def test_log_paths_stay_inside_deploy_to() -> None:
    layout = Layout("/srv/app")
    assert oneoff.log_paths(layout, ["log/a.log", "/srv/app/current/x.log", "../tmp/b"]) == [
        "/srv/app/shared/log/a.log",
        "/srv/app/current/x.log",
        "/srv/app/tmp/b",
    ]
    for bad in ("../../etc/passwd", "/etc/passwd", "/srv/application/x", "", "a\nb"):
        with pytest.raises(ConfigError):
            oneoff.log_paths(layout, [bad])


def test_the_logs_command_quotes_every_path_and_follows_without_deadline() -> None:
    layout = Layout("/srv/app")
    command = oneoff.logs_command(layout, ["/srv/app/shared/a b.log"], lines=5, follow=True)
    assert command.line == "exec tail -n 5 -F -- '/srv/app/shared/a b.log'"
    assert command.timeout == oneoff.UNBOUNDED
    every = oneoff.logs_command(layout, [], lines=100, follow=False)
    assert "cd /srv/app/shared/log" in every.line and 'tail -n 100 -- "$@"' in every.line


def test_lines_are_cut_cleaned_prefixed_and_sent_to_their_stream() -> None:
    out, err = io.StringIO(), io.StringIO()
    seen: list[tuple[str, str, str]] = []
    lines = HostLines(
        Redactor([Secret("hunter2-secret")]),
        out,
        err,
        on_line=lambda *line: seen.append(line),
    )
    sink = lines.sink("web1")
    sink("stdout", "first hun")
    sink("stdout", "ter2-secret line\r\nsec")
    sink("stderr", "a\tb \x1b[31mred\x1b[0m \x07bell\n")
    sink("stdout", "ond")
    assert out.getvalue() == "web1 | first *** line\n"
    sink.flush()
    assert out.getvalue() == "web1 | first *** line\nweb1 | second\n"
    assert err.getvalue() == "web1 | a\tb red \\x07bell\n"
    assert seen[-1] == ("web1", "stdout", "second")


def test_the_exit_status_is_the_worst_hosts() -> None:
    def status(*results: Result, stopped: frozenset[str] = frozenset()) -> int:
        named = {f"h{i}": r for i, r in enumerate(results)}
        return Streamed(named, stopped=stopped).exit_status()

    assert status(Result(0), Result(0)) == 0
    assert status(Result(0), Result(3), Result(1)) == 3
    assert status(Result(2), Result(1, unreachable=True)) == 255
    assert status(Result(-9), Result(1)) == 137
    assert status(Result(0), Result(130), stopped=frozenset({"h1"})) == 0


def test_the_local_backend_streams_output_as_it_comes() -> None:
    backend = LocalBackend()
    arrived: list[tuple[str, str, float]] = []
    started = time.monotonic()
    result = backend.stream(
        Command("echo one; sleep 1; echo two >&2; echo three", env={"X": Secret("v")}),
        lambda stream, text: arrived.append((stream, text, time.monotonic() - started)),
    )
    assert result == Result(0)
    assert "".join(t for s, t, _ in arrived if s == "stdout") == "one\nthree\n"
    assert "".join(t for s, t, _ in arrived if s == "stderr") == "two\n"
    assert arrived[0][2] < 0.9  # "one" arrived before the command ended
    assert backend.run(Command("echo kept")).stdout == "kept\n"  # run() keeps as before


def test_a_backend_that_cannot_stream_hands_the_output_over_at_the_end() -> None:
    fake = FakeBackend("web1", lambda op: Result(4, "out\n", "err\n"))
    arrived: list[tuple[str, str]] = []
    result = fake.stream(Command("x"), lambda *piece: arrived.append(piece))
    assert result == Result(4)
    assert arrived == [("stdout", "out\n"), ("stderr", "err\n")]
    fake.halt()
    assert fake.stream(Command("x"), lambda *piece: None).exit_code == 130


def test_exec_from_python_returns_each_hosts_lines_and_status(deployed: Project) -> None:
    from deploylib import HostRun
    from deploylib import Project as Api

    arrived: list[tuple[str, str, str]] = []
    [run] = Api(deployed.root).exec(
        "dev", 'echo "$API_TOKEN"; echo warn >&2; exit 4', on_line=lambda *a: arrived.append(a)
    )
    assert isinstance(run, HostRun)
    assert (run.host, run.exit_code, run.ok, run.error) == ("local", 4, False, None)
    assert (run.stdout, run.stderr) == (("***",), ("warn",))
    assert sorted(arrived) == [("local", "stderr", "warn"), ("local", "stdout", "***")]
    with pytest.raises(ConfigError):
        Api(deployed.root).exec("dev", "true", hosts="local")
    [slow] = Api(deployed.root).exec("dev", "sleep 20", timeout=0.3)
    assert slow.exit_code == 124 and slow.error == "timed out after 0.3 s"
