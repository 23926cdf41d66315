"""``fleet.run_parallel`` on stand-in targets: order, errors, and Ctrl-C (a real SIGINT to the
main thread), a second one landing inside the clean-up included."""

from __future__ import annotations

import signal
import threading
import time
from typing import cast

from deploylib.fleet import Target, run_parallel


class Backend:
    def __init__(self, log: list[str], name: str, stop: threading.Event) -> None:
        self.log, self.name, self.stop = log, name, stop
        self.interrupt_halt_once = False

    def halt(self) -> None:
        if self.interrupt_halt_once:
            self.interrupt_halt_once = False
            raise KeyboardInterrupt  # a second Ctrl-C, landing in the middle of the halt
        self.log.append(f"halt {self.name}")
        self.stop.set()

    def resume(self) -> None:
        self.log.append(f"resume {self.name}")


class Stand:
    def __init__(self, name: str, backend: Backend) -> None:
        self.name, self.backend = name, backend


def targets(names: str, log: list[str], stop: threading.Event) -> list[Target]:
    return [cast(Target, Stand(n, Backend(log, n, stop))) for n in names]


def test_one_at_a_time_in_order_and_errors_by_target() -> None:
    log: list[str] = []

    def work(target: Target) -> None:
        log.append(target.name)
        if target.name in "bd":
            raise ValueError(target.name)

    errors = run_parallel(work, targets("abcde", log, threading.Event()), 1)
    assert log == list("abcde")
    assert list(errors) == ["b", "d"] and str(errors["d"]) == "d"


def test_a_second_ctrl_c_inside_the_clean_up_still_halts_waits_and_resumes() -> None:
    log: list[str] = []
    stop = threading.Event()
    fleet = targets("abc", log, stop)
    cast(Backend, fleet[1].backend).interrupt_halt_once = True
    started = threading.Event()
    cut_short = {"on_interrupt": 1}

    def work(target: Target) -> None:
        log.append(f"start {target.name}")
        started.set()
        stop.wait(10)
        time.sleep(0.2)  # work that takes a moment to end once halted
        log.append(f"end {target.name}")

    def on_interrupt() -> None:
        if cut_short["on_interrupt"]:
            cut_short["on_interrupt"] -= 1
            raise KeyboardInterrupt  # and another one, inside the interrupt's own handling
        log.append("interrupted")

    def ctrl_c() -> None:
        started.wait(10)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    try:
        run_parallel(work, fleet, 1, on_interrupt=on_interrupt)
    except KeyboardInterrupt:
        raised = True
    else:
        raised = False
    assert raised
    at_the_raise = list(log)
    time.sleep(0.5)
    assert log == at_the_raise  # nothing started or ran on after it returned
    assert at_the_raise[:2] == ["start a", "interrupted"]
    assert {"halt a", "halt b", "halt c"} <= set(at_the_raise)
    assert at_the_raise.index("end a") < at_the_raise.index("resume a")  # waited, then resumed
    assert at_the_raise[-3:] == ["resume a", "resume b", "resume c"]
    assert not any(entry.startswith(("start b", "start c")) for entry in at_the_raise)
