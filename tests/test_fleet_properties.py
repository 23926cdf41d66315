"""Random sequences of deploys, failures, torn log writes, full disks, interrupts and rollbacks
over three hosts keep the promises:

* no shared file is ever lost;
* no host's ``current`` points at a missing or unfinished (no REVISION) release;
* each host's config is the config its code was deployed with;
* the exit code matches where the hosts are: 0 when every host is on the release the command
  was for, 1 when every host is where it was; all hosts are always on one release, no lock left.

The hosts are directories on this machine, each its own small file system (tmpfs, so a full disk
is real; as root — without, plain directories and no full disks): a backend runs every command
for real, with ``/srv/app`` rewritten to the host's directory. An interrupt is a real SIGINT to
this process, sent just before a chosen operation runs on a chosen host.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploylib import DeployError, Pipeline, Secret, build, command, push, run, switch, verify
from deploylib.backends.local import LocalBackend
from deploylib.commands import Command, Result, Upload
from deploylib.errors import PlacedError
from deploylib.hosts import LOCAL, Host
from deploylib.reporting import RecordingReporter
from deploylib.runner import Runner
from deploylib.testing import environment

pytestmark = pytest.mark.slow

DEPLOY_TO = "/srv/app"
HOSTS = ["h1", "h2", "h3"]

PIPELINE = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(),
    run("test ! -e {deploy_to}/FAIL_PREPARE"),
    switch(
        restart="if [ -e {deploy_to}/BREAK_NEXT ]; then rm {deploy_to}/BREAK_NEXT; "
        "touch {deploy_to}/UNHEALTHY-{release}; fi"
    ),
    verify(command("test ! -e {deploy_to}/UNHEALTHY-{release}"), attempts=1, wait=0),
    run(
        "[ ! -e {deploy_to}/FILL_AT_END ] || { rm {deploy_to}/FILL_AT_END; "
        "dd if=/dev/zero of={deploy_to}/FILLER bs=64k 2>/dev/null; true; }",
        name="fill",
    ),
)

#: a line cut short by a full disk or a crash
TORN = '{"time": "torn", "event": "depl'
#: operations an interrupt may come before (a push is one command: prepare, artifact, unpack;
#: so is a switch with its restart)
INTERRUPT_BEFORE = ["push", "run", "switch", "check", "record"]


class RebasedHost(LocalBackend):
    """A host whose ``/srv/app`` is ``root/srv/app`` on this machine."""

    def __init__(self, host: Host, root: Path) -> None:
        super().__init__(host)
        self.base = str(root) + DEPLOY_TO

    def _rebase(self, text: str) -> str:
        return text.replace(DEPLOY_TO, self.base)

    def run(self, command: Command) -> Result:
        self._maybe_interrupt(command.description)
        cwd = self._rebase(command.cwd) if command.cwd else None
        script, guard = self._rebase(command.script), self._rebase(command.guard)
        return super().run(replace(command, script=script, cwd=cwd, guard=guard))

    def upload(self, upload: Upload) -> Result:
        return super().upload(replace(upload, remote=self._rebase(upload.remote)))

    def _maybe_interrupt(self, description: str) -> None:
        marker = Path(self.base) / "INTERRUPT_BEFORE"
        with contextlib.suppress(OSError):
            if description.startswith(marker.read_text()):
                marker.unlink()
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the runner gets it


#: small disks of their own need root; without, the hosts are plain directories and the
#: full-disk actions do nothing
SMALL_DISKS = os.geteuid() == 0


@contextlib.contextmanager
def host_disks(root: Path) -> Iterator[dict[str, Path]]:
    disks = {name: root / name / "srv" / "app" for name in HOSTS}
    mounted = []
    try:
        for disk in disks.values():
            disk.mkdir(parents=True)
            if SMALL_DISKS:
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "size=3m", "dl-prop", str(disk)], check=True
                )
                mounted.append(disk)
        yield disks
    finally:
        for disk in mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


ACTION = st.one_of(
    st.tuples(st.just("deploy"), st.none()),
    st.tuples(st.sampled_from(["fail_prepare", "fail_verify"]), st.sampled_from(HOSTS)),
    st.tuples(st.just("rollback"), st.none()),
    st.tuples(st.just("torn_log"), st.sampled_from(HOSTS)),
    st.tuples(st.sampled_from(["full_at_lock", "full_at_end"]), st.sampled_from(HOSTS)),
    st.tuples(
        st.just("interrupt"), st.tuples(st.sampled_from(HOSTS), st.sampled_from(INTERRUPT_BEFORE))
    ),
)


@settings(
    max_examples=int(os.environ.get("DEPLOYLIB_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(actions=st.lists(ACTION, min_size=1, max_size=8), keep=st.integers(1, 3))
def test_random_faults_keep_every_promise(actions: list[tuple[str, object]], keep: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, host_disks(Path(tmp)) as disks:
        Fleet(Path(tmp), disks, keep).play(actions)


class Fleet:
    """Three hosts, the deploys made to them, and the promises checked after each action."""

    def __init__(self, root: Path, disks: dict[str, Path], keep: int) -> None:
        self.root = root
        self.disks = disks
        self.keep = keep
        (root / "project" / "app").mkdir(parents=True)
        (root / "project" / "app" / "index.txt").write_text("hello\n")
        minutes = count()
        self.clock = lambda: datetime(2026, 4, 1, tzinfo=UTC) + timedelta(minutes=next(minutes))
        self.current: str | None = None
        self.number = 0
        #: what a rollback goes back to while nothing odd happened (torn log, lost log line)
        self.stack: list[str] = []
        self.exact = True
        for disk in disks.values():
            (disk / "shared" / "log").mkdir(parents=True)
            (disk / "shared" / "log" / "keep.txt").write_text("user data\n")

    def runner(self, revision: str) -> Runner:
        env = environment(
            self.root / "project",
            deploy_to=DEPLOY_TO,
            keep_releases=self.keep,
            hosts=[Host(h, h) for h in HOSTS],
            shared_dirs=["log"],
            variables={"REV": Secret(f"value-of-{revision}")},
        )
        return Runner(
            env,
            PIPELINE,
            reporter=RecordingReporter(),
            clock=self.clock,
            backend_for=lambda host: RebasedHost(host, self.root / host.name),
            controller=LocalBackend(LOCAL),
            revision=revision,
        )

    def play(self, actions: list[tuple[str, object]]) -> None:
        for action, arg in actions:
            if action.startswith("full_") and not SMALL_DISKS:
                continue
            self.number += 1
            self.act(action, arg)
            self.check(action)

    def act(self, action: str, arg: object) -> None:
        revision = f"rev{self.number}"
        if action == "rollback":
            self.rollback()
            return
        expect_ok: bool | None = action in ("deploy", "full_at_end")
        if action in ("fail_prepare", "fail_verify", "full_at_lock", "full_at_end"):
            assert isinstance(arg, str)
            disk = self.disks[arg]
            marker = {
                "fail_prepare": "FAIL_PREPARE",
                "fail_verify": "BREAK_NEXT",
                "full_at_end": "FILL_AT_END",
            }.get(action)
            if marker:
                (disk / marker).touch()
            else:
                subprocess.run(
                    ["dd", "if=/dev/zero", f"of={disk}/FILLER", "bs=64k"], capture_output=True
                )
        elif action == "torn_log":
            assert isinstance(arg, str)
            log = self.disks[arg] / ".deploylib" / "releases.jsonl"
            if log.exists() and log.read_text().endswith("\n"):
                with log.open("a") as file:
                    file.write(TORN)
                self.exact = False
            return
        elif action == "interrupt":
            assert isinstance(arg, tuple)
            host, before = arg
            (self.disks[host] / "INTERRUPT_BEFORE").write_text(before)
            # an interrupt the deploy defers (while it records) does not stop it
            expect_ok = None
        try:
            outcome = self.runner(revision).deploy([Host(h, h) for h in HOSTS])
        except DeployError as failure:
            assert expect_ok is not True, failure
            assert failure.exit_code == 1, failure
            assert isinstance(failure, PlacedError), failure  # it says where each host is
            assert set(failure.placement.values()) <= {self.current}, failure.placement
            assert not failure.doubts, failure
        else:
            assert expect_ok is not False, action
            self.current = outcome.release
            self.stack.append(outcome.release)
            if action == "full_at_end":
                self.exact = False  # a host's log lacks this deploy's line
        finally:
            for disk in self.disks.values():
                for name in ("FAIL_PREPARE", "BREAK_NEXT", "FILL_AT_END", "FILLER"):
                    (disk / name).unlink(missing_ok=True)
                (disk / "INTERRUPT_BEFORE").unlink(missing_ok=True)

    def rollback(self) -> None:
        try:
            outcome = self.runner("rollback").rollback([Host(h, h) for h in HOSTS])
        except DeployError as failure:
            assert failure.exit_code == 1, failure
            assert isinstance(failure, PlacedError), failure  # it says where each host is
            assert set(failure.placement.values()) <= {self.current}, failure.placement
            assert not failure.doubts, failure
            return
        if self.exact:
            assert len(self.stack) >= 2 and outcome.release == self.stack[-2]
            self.stack.pop()
        self.current = outcome.release

    def check(self, action: str) -> None:
        for name, disk in self.disks.items():
            where = (name, action)
            link = disk / "current"
            on_host = os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None
            assert on_host == self.current, where
            assert (disk / "shared" / "log" / "keep.txt").read_text() == "user data\n", where
            assert not (disk / ".deploylib" / "lock").exists(), where
            if on_host is None:
                continue
            release = disk / "releases" / on_host
            revision = (release / "REVISION").read_text().split()[1]  # complete
            assert dotenv_values(disk / "shared" / ".env") == {"REV": f"value-of-{revision}"}
            # every line reads whole, but for the torn ones written here, which nothing joined
            log = disk / ".deploylib" / "releases.jsonl"
            for line in log.read_text().splitlines() if log.exists() else []:
                if line.startswith(TORN[:15]):
                    assert line == TORN, where
                else:
                    assert isinstance(json.loads(line), dict), where
