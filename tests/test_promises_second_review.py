"""Faults a second adversarial review found, fixed and kept as tests: a switch cut off after it
landed, config kept on the server, a shared dir that is a link, custom commands and the lock,
SIGHUP, exit codes, secrets in check needles and in the webhook body, rollouts that lost a lock.

Local backend only: every test deploys for real into a temporary directory; the SSH ones are in
tests/test_ssh_faults.py.
"""

from __future__ import annotations

import getpass
import http.server
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dotenv import dotenv_values

from tests.conftest import BASIC_PIPELINE, BASIC_TOML, Project

# ---------------------------------------------------------------------------- promise 1 and 2

# A `mv` whose rename into `current` lands and then hangs (a file system that stalls after the
# rename: NFS, an overloaded disk); renaming back to the OLD release fails at once.
HANGING_MV = r"""#!/bin/sh
last=""; for a in "$@"; do prev="$last"; last="$a"; done
case "$last" in
  */current)
    if [ "$(readlink "$prev")" = "releases/$OLD" ]; then echo "mv: I/O error" >&2; exit 1; fi
    /bin/mv "$@"; sleep 30; exit 0;;
esac
exec /bin/mv "$@"
"""


def test_a_switch_that_timed_out_after_it_landed_never_deletes_the_live_release(
    project: Project, tmp_path: Path
) -> None:
    """A switch whose rename landed, then timed out, with a put-back that fails: current is read
    back from the host, the release it points at is never removed (nor by the host-side check in
    the removal), and the placement and the release log say what the host really runs."""
    project.write(
        "deploy.toml",
        BASIC_TOML.replace("keep_releases = 3", "keep_releases = 3\ncommand_timeout = 3"),
    )
    first = project.cli("deploy", "--env", "dev")
    assert first.returncode == 0, first.stdout + first.stderr
    old = project.current()
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "mv").write_text(HANGING_MV)
    (fake / "mv").chmod(0o755)

    result = project.cli(
        "deploy", "--env", "dev", env={"PATH": f"{fake}:{os.environ['PATH']}", "OLD": old or ""}
    )

    assert result.returncode == 4, result.stdout + result.stderr
    live = project.current()
    # the release `current` points at still exists...
    assert (project.target / "current").exists(), (live, project.release_dirs())
    # ...and what the host really runs is what is reported and logged (or "old or new")
    placement = result.stdout.rstrip().splitlines()[-1]
    assert placement == f"  local: {live}" or " or " in placement, result.stdout
    assert project.log()[-1]["current"] == live


def test_a_server_kept_shared_env_that_is_a_symlink_is_left_alone(
    project: Project, tmp_path: Path
) -> None:
    """With no env files in the project, a shared/.env kept on the server stays the config also
    when it is a link (config management pointing it at /etc/app.env or a secrets mount)."""
    etc = tmp_path / "etc-app.env"
    etc.write_text("DATABASE_URL=postgres://kept-by-config-management\n")
    shared_env = project.target / "shared" / ".env"
    shared_env.parent.mkdir(parents=True)
    shared_env.symlink_to(etc)

    project.deploy()

    assert os.readlink(shared_env) == str(etc)
    assert dotenv_values(project.target / "current" / ".env") == {
        "DATABASE_URL": "postgres://kept-by-config-management"
    }


def test_shared_env_follows_current_when_shared_is_a_symlink(
    project: Project, tmp_path: Path
) -> None:
    """`shared` moved to a bigger disk and linked: shared/.env still reaches the live release's
    env file (the link is absolute)."""
    elsewhere = tmp_path / "bigdisk" / "demo-shared"
    elsewhere.mkdir(parents=True)
    project.target.mkdir()
    (project.target / "shared").symlink_to(elsewhere)
    project.write(".env", "SECRET_KEY=abcdef\n")

    project.deploy()

    assert dotenv_values(project.target / "shared" / ".env") == {"SECRET_KEY": "abcdef"}


def test_a_first_deploy_onto_a_server_kept_shared_env_file_succeeds(project: Project) -> None:
    """A host prepared by hand, with a shared/.env file and no release yet, takes its first deploy
    of a project with env files (the migration loop skips a glob that matched nothing)."""
    shared_env = project.target / "shared" / ".env"
    shared_env.parent.mkdir(parents=True)
    shared_env.write_text("DATABASE_URL=kept\n")
    project.write(".env", "SECRET_KEY=abcdef\n")

    outcome, _ = project.deploy()

    assert project.current() == outcome.release


# ---------------------------------------------------------------------------- the lock guard

TAKE_OVER = (
    "rm -rf {deploy_to}/.deploylib/lock && mkdir {deploy_to}/.deploylib/lock && "
    'echo \'{{"user": "other", "token": "ffffffffffffffff"}}\' '
    "> {deploy_to}/.deploylib/lock/owner.json"
)


def test_a_command_from_a_custom_step_runs_only_under_the_lock(project: Project) -> None:
    """A `Command` a custom step yields runs, like every other command, only while the deploy
    holds the lock: taken over by another deploy, it never runs (exit 3)."""
    project.deploy(revision="aaaa")
    project.write(
        "pipelines/web.py",
        f'''
from deploylib import Pipeline, Command, build, push, run, step, switch

@step
def mark(ctx):
    yield Command.of("touch", ctx.env.deploy_to + "/WRITTEN_UNDER_ANOTHER_DEPLOYS_LOCK")

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    run("""{TAKE_OVER}"""),
    mark,
    switch(restart="true"),
)
''',
    )
    result = project.cli("deploy", "--env", "dev")
    assert result.returncode == 3, result.stdout + result.stderr
    assert not (project.target / "WRITTEN_UNDER_ANOTHER_DEPLOYS_LOCK").exists()


# ---------------------------------------------------------------------------- signals


def test_a_hangup_cleans_up_like_sigterm(project: Project) -> None:
    """SIGHUP (a closed terminal, a lost session to the deploy box) stops a deploy like Ctrl-C:
    the unfinished release is removed and the lock released (exit 1)."""
    first = project.cli("deploy", "--env", "dev")
    assert first.returncode == 0
    process = project.start_slow_deploy(20)
    process.send_signal(signal.SIGHUP)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, (process.returncode, out, err)
    assert not (project.target / ".deploylib" / "lock").exists()
    assert project.release_dirs() == {project.current()}


# ---------------------------------------------------------------------------- exit codes


def test_a_put_back_whose_restart_fails_is_not_called_a_split_fleet(project: Project) -> None:
    """The restart fails on every release: the host is back on its old release, so the fleet is on
    one release (exit 1, unwell), not split (exit 4)."""
    first = project.cli("deploy", "--env", "dev")
    assert first.returncode == 0
    old = project.current()
    project.write(
        "pipelines/web.py",
        BASIC_PIPELINE.replace(
            'switch(restart="echo {release} >> {shared_path}/restarts")',
            'switch(restart="echo {release} >> {shared_path}/restarts; service-manager-broken")',
        ),
    )
    result = project.cli("deploy", "--env", "dev")
    assert project.current() == old
    assert result.returncode == 1, result.stdout
    assert "different releases" not in result.stdout


# ---------------------------------------------------------------------------- promise 4


class _OK(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: object) -> None:
        pass


def test_a_secret_in_a_contains_needle_is_masked_in_its_repr(
    project: Project, tmp_path: Path
) -> None:
    """A secret inside an http check's `contains`, shown by repr() with its quote escaped, is
    masked on the terminal, in --events and in the release log."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OK)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        project.write(".env", 'API_TOKEN="it\'s-s3cret-value"\n')
        project.write(
            "pipelines/web.py",
            BASIC_PIPELINE.replace("verify, command", "verify, command, http").replace(
                'verify(command("test ! -e {current_path}/BROKEN"), attempts=2, wait=0)',
                f'verify(http("http://127.0.0.1:{port}/health", '
                'contains=\'"token": "${API_TOKEN}"\'), attempts=1)',
            ),
        )
        events = tmp_path / "events.jsonl"
        result = project.cli("deploy", "--env", "dev", "--verbose", "--events", str(events))
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1, result.stdout + result.stderr
    log = (project.target / ".deploylib" / "releases.jsonl").read_text()
    for where, text in [
        ("terminal", result.stdout + result.stderr),
        ("--events", events.read_text()),
        ("release log", log),
    ]:
        assert "s3cret-value" not in text, where


def test_the_webhook_body_is_redacted_like_every_other_output(project: Project) -> None:
    """The webhook body's own fields (user, hosts, app, env) pass the redactor like every other
    output."""
    received: list[dict[str, object]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        user = getpass.getuser()
        project.write(".env", f"DB_USER={user}\n")
        project.write(
            "deploy.toml",
            BASIC_TOML + f'\n[notify]\nwebhook = "http://127.0.0.1:{port}/hook"\n',
        )
        result = project.cli("deploy", "--env", "dev")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert user not in result.stdout  # masked on the terminal...
    assert received and user not in json.dumps(received)  # ...but not in the webhook body


# ---------------------------------------------------------------------------- locks and batches


def test_a_rollout_stops_when_an_earlier_batchs_lock_was_lost() -> None:
    """Before each batch switches, the locks of every host are checked: h1's lock, lost while h1
    verifies, stops the rollout before h2 switches. h1, switched and no longer locked, is not
    touched: the fleet is split and exit 4 says so."""
    from deploylib import FleetInconsistent, Pipeline, build, http, push, switch, verify
    from deploylib.commands import Command, Operation, Probe, Result
    from deploylib.config import StrategySettings
    from deploylib.hosts import Host
    from deploylib.remote.lock import LOCK_LOST_EXIT
    from deploylib.testing import FakeFleet, deploy_with_fakes, environment

    fleet = FakeFleet()
    switched: list[str] = []
    lost = {"h1": False}

    def h1(op: Operation) -> Result | None:
        if isinstance(op, Probe):
            lost["h1"] = True  # taken over while h1 verifies
            return None
        if lost["h1"] and isinstance(op, Command) and op.guard:
            return Result(
                LOCK_LOST_EXIT,
                stderr="the deploy lock here is no longer this deploy's (removed or taken over)",
            )
        return None

    def record_switch(name: str) -> Callable[[Operation], Result | None]:
        def responder(op: Operation) -> Result | None:
            if isinstance(op, Command) and op.description.startswith("switch to"):
                switched.append(name)
            return None

        return responder

    fleet["h1"].respond(record_switch("h1"))
    fleet["h1"].respond(h1)
    fleet["h2"].respond(record_switch("h2"))
    env = environment(
        hosts=[Host("h1", "h1"), Host("h2", "h2")],
        strategy=StrategySettings(kind="rolling", batch=1),
    )
    pipeline = Pipeline(
        build("make {artifact}"),
        push(),
        switch(restart="restart"),
        verify(http("http://{host_address}/"), attempts=1, wait=0),
    )
    outcome, _ = deploy_with_fakes(env, pipeline, fleet)
    assert isinstance(outcome, FleetInconsistent), outcome
    assert "lock on h1 was removed or taken over" in str(outcome)
    assert outcome.placement == {"h1": "20260102T030405Z-abc1234", "h2": None}
    assert switched == ["h1"], switched  # h2 must not switch once h1's lock is gone


def test_a_deploy_started_by_a_process_a_deploy_started_does_not_run_beside_it(
    project: Project,
) -> None:
    """What a restart leaves running in the background does not carry the deploy's lock token: a
    deploy it starts waits for the lock (exit 3) instead of running beside the first one."""
    import sys

    from tests.conftest import REPO

    child = (
        f"cd {project.root} && PYTHONPATH={REPO} CI=true {sys.executable} -m deploylib deploy "
        f"--env dev --pipeline other --revision child > {project.root}/child.log 2>&1; "
        f"echo $? > {project.root}/child.rc"
    )
    project.write(
        "pipelines/web.py",
        f"""
from deploylib import Pipeline, build, push, switch, verify, command
pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    switch(restart="nohup sh -c {child!r} >/dev/null 2>&1 </dev/null &"),
    verify(command("sleep 6"), attempts=1),
)
""",
    )
    project.write(
        "pipelines/other.py",
        """
from deploylib import Pipeline, build, push, switch, verify, command
pipeline = Pipeline(
    build("tar -czf {artifact} -C app ."), push(), switch(), verify(command("true"))
)
""",
    )
    result = project.cli("deploy", "--env", "dev", "--revision", "parent")
    child_rc = project.root / "child.rc"
    deadline = time.monotonic() + 30
    while not child_rc.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child_rc.exists(), "the deploy the restart started never ended"
    child_log = (project.root / "child.log").read_text()
    assert "locked" in child_log.lower(), child_log  # the second deploy waits or exits 3
    if result.returncode == 0:
        assert result.stdout.rstrip().endswith(f"local → {project.current()}"), result.stdout
