"""A local command killed by its deadline is reported as timed out, also when it ends before
the timer that killed it does (Invoke tells a timeout by its timer having ended: a command
that died of the TERM first looked like one killed by someone else, "exit -15")."""

from __future__ import annotations

import subprocess
import threading

from invoke.context import Context

from deploylib.backends.local import LocalBackend, _DeployLocal
from deploylib.commands import Command


def test_the_deadline_s_kill_marks_the_command_timed_out_before_its_timer_ends() -> None:
    runner = _DeployLocal(Context())
    timer = threading.Timer(60, lambda: None)  # a timer still running: its thread not ended
    timer.start()
    runner._timer = timer
    runner.process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert not runner.timed_out
        runner.kill()  # what the timer calls
        runner.process.wait(timeout=10)
        assert timer.is_alive() and runner.timed_out
    finally:
        timer.cancel()
        runner.process.kill()


def test_a_local_command_past_its_deadline_is_timed_out() -> None:
    result = LocalBackend().run(Command("sleep 30", timeout=0.3))
    assert result.timed_out and "timed out" in result.summary()
