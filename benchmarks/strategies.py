"""Strategies behind a real nginx: in-place (gunicorn USR2) against blue-green slots, plain and as
a weighted canary, under client load.

    python benchmarks/strategies.py [--runs 5] [--threads 4] [--strategies in_place,blue_green,...]

Everything runs on this machine, on 127.0.0.1 only. For each run and each strategy a fresh
nginx (tests/testbed/nginx.py) and a fresh project are set up, a first release is deployed
(not measured), then, while clients GET through nginx, one deploy and one rollback are measured:

- wall time of the `deploylib deploy --env dev` (and `deploylib rollback --env dev`) process;
  for the weighted canary the bake (from its `bake` events) is reported beside it;
- switch latency, from the events (`--events FILE`): from the `step.start` of the step that
  first sends requests to the new release (`switch`; `weigh` for the weighted canary) to the
  first answer through nginx naming the new release, and from the `step.start` of `switch` to
  the last answer naming the old one;
- failed requests, from ``--threads`` clients opening a fresh connection per request and, at
  the same time, ``--threads`` keep-alive clients (one `http.client.HTTPConnection` each,
  reused), counted without a retry and with one retry of the GET on a connection error.

Prints each run, then medians with min and max. A benchmark, not a test: nothing here asserts a
time. The load is bounded: each phase stops its clients when the deploylib process has ended
and a few more answers came, after at most ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed.clients import Clients  # noqa: E402
from tests.testbed.load import free_port, get  # noqa: E402
from tests.testbed.nginx import Nginx, nginx  # noqa: E402
from tests.testbed.slots import APP  # noqa: E402
from tests.testbed.slots import PIPELINE as SLOTS_PIPELINE  # noqa: E402

IN_PLACE_PIPELINE = """\
from deploylib import Pipeline, build, http, push, verify
from deploylib.recipes import gunicorn

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    gunicorn("app:app", bind="127.0.0.1:{port}", workers=2, args=["--graceful-timeout", "5"]),
    verify(http("http://127.0.0.1:{port}/health", contains="{{release}}"), attempts=60, wait=0.1),
)
"""

TOML = """\
app = "bench"
deploy_to = "/srv/bench"
keep_releases = 5

[environments.dev]
hosts = ["local"]
deploy_to = "target"
command_timeout = 60

[environments.dev.strategy]
{strategy}
"""

BLUE_GREEN = """\
kind = "blue_green"
ports = [{blue}, {green}]
upstream_file = "{upstream}"
proxy_check = "{check}"
proxy_reload = "{reload}"
drain = 1
"""

WEIGHT, BAKE, WAIT = 20, 2, 0.5

STRATEGIES = {
    "in_place": "in-place (`all`, `gunicorn(...)`, USR2)",
    "blue_green": "blue_green (`gunicorn_slots(...)`)",
    "weighted": f"blue_green, weight = {WEIGHT}, bake = {BAKE} s",
}


@dataclass
class Phase:
    """One measured deploy or rollback."""

    wall: float
    bake: float | None
    switch_step: float | None  # s the switch step took (`switch`; `rollback` in place)
    first_new: float | None  # s from the step that sends traffic to the new release
    last_old: float | None  # s from the switch step
    requests: int
    fresh_failed: int
    kept_failed_first: int
    kept_failed_retry: int
    kept_requests: int
    kept_told_to_close: int  # keep-alive connections ended by a "Connection: close" answer
    errors: list[str] = field(default_factory=list)


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value).astimezone(UTC).timestamp()


def read_events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_start(events: list[dict[str, object]], step: str) -> float | None:
    for event in events:
        if event["event"] == "step.start" and event.get("step") == step:
            return parse_time(str(event["ts"]))
    return None


def step_seconds(events: list[dict[str, object]], step: str) -> float | None:
    for event in events:
        if event["event"] == "step.ok" and event.get("step") == step:
            return float(str(event["seconds"]))
    return None


def bake_seconds(events: list[dict[str, object]]) -> float | None:
    bakes = [parse_time(str(e["ts"])) for e in events if e["event"] == "bake"]
    return bakes[-1] - bakes[0] if len(bakes) >= 2 else None


class Bench:
    """One strategy's testbed: nginx, a project, and the commands that drive it."""

    def __init__(self, root: Path, kind: str, proxy: Nginx, ports: tuple[int, int]) -> None:
        self.root = root
        self.kind = kind
        self.proxy = proxy
        self.ports = ports
        self.counter = 0
        (root / "app").mkdir(parents=True)
        (root / "app" / "app.py").write_text(APP)
        (root / "pipelines").mkdir()
        if kind == "in_place":
            pipeline = IN_PLACE_PIPELINE.format(port=ports[0])
            strategy = 'kind = "all"'
        else:
            pipeline = SLOTS_PIPELINE
            strategy = BLUE_GREEN.format(
                blue=ports[0],
                green=ports[1],
                upstream=proxy.upstream,
                check=proxy.check.replace('"', '\\"'),
                reload=proxy.reload.replace('"', '\\"'),
            )
            if kind == "weighted":
                strategy += f"weight = {WEIGHT}\nbake = {BAKE}\nwait = {WAIT}\n"
        (root / "pipelines" / "web.py").write_text(pipeline)
        (root / "deploy.toml").write_text(TOML.format(strategy=strategy))

    def cli(self, *args: str, events: Path | None = None) -> float:
        argv = [sys.executable, "-m", "deploylib", *args, "--env", "dev"]
        if args[0] == "deploy":
            self.counter += 1
            argv += ["--revision", f"rev{self.counter:04d}"]
        if events is not None:
            argv += ["--events", str(events)]
        started = time.perf_counter()
        done = subprocess.run(
            argv,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "CI": "true"},
        )
        took = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return took

    def current(self) -> str:
        return os.readlink(self.root / "target" / "current").rsplit("/", 1)[-1]

    def serving(self) -> str:
        return get(self.proxy.port, "/").split()[1]

    def stop(self) -> None:
        """Stop every gunicorn the deploys started, and wait (bounded) until they are gone."""
        shared = self.root / "target" / "shared"
        pids = []
        for pidfile in shared.glob("gunicorn*.pid*"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pidfile.read_text()))
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(pid), signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(OSError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def measure(bench: Bench, what: str, events: Path, threads: int, max_seconds: float) -> Phase:
    """One deploy or rollback under load."""
    before = bench.current()
    fresh = Clients(bench.proxy.port, threads=threads, max_seconds=max_seconds)
    kept = Clients(bench.proxy.port, threads=threads, keep_alive=True, max_seconds=max_seconds)
    with fresh, kept:
        fresh.wait_for_answers(20)
        kept.wait_for_answers(20)
        wall = bench.cli(what, events=events)
        fresh.wait_for_answers(20)
        kept.wait_for_answers(20)
    after = bench.current()
    if after == before or bench.serving() != after:
        raise SystemExit(f"{what} did not move nginx from {before} to another release")
    log = read_events(events)
    timeline = sorted(fresh.timeline + kept.timeline)
    old, new = f"release {before}", f"release {after}"
    weighted = bench.kind == "weighted" and what == "deploy"
    # a rollback in place runs the pipeline's `rollback` step (the switch step's restart)
    switch_name = "switch" if step_start(log, "switch") is not None else "rollback"
    switch = step_start(log, switch_name)
    first_step = step_start(log, "weigh") if weighted else switch
    first_new = next((t for t, body in timeline if body == new), None)
    last_old = max((t for t, body in timeline if body == old), default=None)
    phase = Phase(
        wall=wall,
        bake=bake_seconds(log) if weighted else None,
        switch_step=step_seconds(log, switch_name),
        first_new=first_new - first_step if first_new and first_step else None,
        last_old=last_old - switch if last_old and switch else None,
        requests=fresh.answered + kept.answered,
        fresh_failed=len(fresh.failures),
        kept_failed_first=len(kept.first_failures),
        kept_failed_retry=len(kept.failures),
        kept_requests=kept.answered,
        kept_told_to_close=kept.told_to_close,
        errors=sorted({re.sub(r"\(.*", "", e) for e in fresh.failures + kept.first_failures}),
    )
    return phase


def one_run(
    kind: str, run: int, root: Path, threads: int, max_seconds: float
) -> tuple[Phase, Phase]:
    ports = (free_port(), free_port())
    with nginx(root, ports[0]) as proxy:
        bench = Bench(root / "project", kind, proxy, ports)
        try:
            bench.cli("deploy")
            deadline = time.monotonic() + 30
            while True:  # the first release answers through nginx
                with contextlib.suppress(OSError, AssertionError):
                    if bench.serving() == bench.current():
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("the first release does not answer through nginx")
                time.sleep(0.05)
            deploy = measure(bench, "deploy", root / "deploy.jsonl", threads, max_seconds)
            rollback = measure(bench, "rollback", root / "rollback.jsonl", threads, max_seconds)
        finally:
            bench.stop()
    for name, phase in (("deploy", deploy), ("rollback", rollback)):
        print(
            f"  run {run} {kind:10} {name:8} wall {phase.wall:.2f} s"
            + (f" (bake {phase.bake:.2f})" if phase.bake is not None else "")
            + f", switch step {phase.switch_step or 0:.2f} s"
            + f", first new {fmt_ms(phase.first_new)}, last old {fmt_ms(phase.last_old)}"
            + f", {phase.requests} requests: failed fresh {phase.fresh_failed}, keep-alive "
            f"{phase.kept_failed_first} without retry / {phase.kept_failed_retry} with one retry"
            + (f" {phase.errors}" if phase.errors else ""),
            flush=True,
        )
    return deploy, rollback


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def cell(values: list[float | None], scale: float = 1.0, digits: int = 2) -> str:
    present = [v * scale for v in values if v is not None]
    if not present:
        return "-"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    return (
        f"{statistics.median(present):.{digits}f} "
        f"({min(present):.{digits}f}-{max(present):.{digits}f})"
    )


def table(results: dict[str, list[tuple[Phase, Phase]]], which: int) -> None:
    if which == 0:
        print(
            "| strategy | deploy s | bake s | deploy - bake s | switch step s "
            "| switch → first new ms | switch → last old ms | requests "
            "| failed, fresh connections | failed, keep-alive, no retry "
            "| failed, keep-alive, one retry |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print(
            "| strategy | rollback s | switch step s | switch → first answer of the release "
            "gone back to ms | switch → last answer of the undone release ms | requests "
            "| failed, fresh connections | failed, keep-alive, no retry "
            "| failed, keep-alive, one retry |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
    for kind, pairs in results.items():
        phases = [pair[which] for pair in pairs]
        counts = [
            cell([float(p.requests) for p in phases], digits=0),
            cell([float(p.fresh_failed) for p in phases], digits=0),
            cell([float(p.kept_failed_first) for p in phases], digits=0),
            cell([float(p.kept_failed_retry) for p in phases], digits=0),
        ]
        latency = [
            cell([p.switch_step for p in phases]),
            cell([p.first_new for p in phases], 1000, 0),
            cell([p.last_old for p in phases], 1000, 0),
        ]
        if which == 0:
            bakes = [p.bake for p in phases]
            net = [p.wall - p.bake if p.bake is not None else None for p in phases]
            print(
                f"| {STRATEGIES[kind]} | {cell([p.wall for p in phases])} | {cell(bakes)} "
                f"| {cell(net)} | {' | '.join(latency)} | {' | '.join(counts)} |"
            )
        else:
            print(
                f"| {STRATEGIES[kind]} | {cell([p.wall for p in phases])} "
                f"| {' | '.join(latency)} | {' | '.join(counts)} |"
            )


def version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4, help="clients of each kind")
    parser.add_argument("--max-seconds", type=float, default=30, help="bound of each phase")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    kinds = args.strategies.split(",")
    unknown = set(kinds) - set(STRATEGIES)
    if unknown:
        raise SystemExit(f"unknown strategies {sorted(unknown)}; known: {', '.join(STRATEGIES)}")
    if not Path(Nginx.binary()).exists() or shutil.which("gunicorn") is None:
        raise SystemExit("needs nginx and gunicorn")
    # a SIGTERM unwinds like Ctrl-C, so nginx and gunicorn are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # measure an installed package: byte-compiled, as pip leaves it
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "deploylib")], check=True)
    print(
        textwrap.dedent(f"""\
        {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs, python {platform.python_version()},
        {version([Nginx.binary(), "-v"])}, {version(["gunicorn", "--version"])},
        {args.runs} runs, {args.threads} fresh-connection + {args.threads} keep-alive clients
        """)
    )
    results: dict[str, list[tuple[Phase, Phase]]] = {kind: [] for kind in kinds}
    for run in range(1, args.runs + 1):
        for kind in kinds:  # interleaved: drift over the runs spreads over every strategy
            with tempfile.TemporaryDirectory() as tmp:
                results[kind].append(one_run(kind, run, Path(tmp), args.threads, args.max_seconds))
    print("\ndeploy, median (min-max):\n")
    table(results, 0)
    print("\nrollback, median (min-max):\n")
    table(results, 1)
    print(f"\nkeep-alive clients, totals over {args.runs} runs:\n")
    for kind, pairs in results.items():
        for which, name in ((0, "deploy"), (1, "rollback")):
            phases = [pair[which] for pair in pairs]
            print(
                f"- {STRATEGIES[kind]}, {name}: {sum(p.kept_requests for p in phases)} requests, "
                f"{sum(p.kept_told_to_close for p in phases)} connections ended by an answer "
                f'saying "Connection: close", {sum(p.kept_failed_first for p in phases)} '
                f"first attempts failed, {sum(p.kept_failed_retry for p in phases)} after one retry"
            )


if __name__ == "__main__":
    main()
