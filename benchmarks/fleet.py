"""Fleet deploy timings over real SSH: deploylib against two floors, a Python one (one paramiko
connection and one exec channel per host: benchmarks/python_floor.py) and a bash + OpenSSH
ControlMaster one (benchmarks/floor.sh).

    sudo python benchmarks/fleet.py [--runs 5] [--sizes 1,5,20,40]

Brings up the largest size's SSH hosts in network namespaces (tests/testbed/sshhosts.py), then
for each fleet size deploys the same artifact with `deploylib deploy` (a fresh process: cold
connections) and both floors, interleaved, and prints median wall seconds, SSH connections and
exec channels per host per deploy (counted from each sshd's log), and the load average. The
artifact is the example app plus 300 generated files, 1.8 MB compressed, like the peers'
figures in the testbed notes; the restart is a no-op (an app server's start-up on 2 shared
CPUs would hide the tool's own cost) and verify is a command check on every host.

The hosts' files live in tmpfs (/dev/shm) when there is one: this machine's virtual disk
throttles under 40 hosts' unpacks, and every figure then swung by up to 3x between runs. The
Python floor runs twice: with paramiko's defaults, and ``--tuned`` with the socket options and
ciphers deploylib's connections get.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed.sshhosts import TestHosts, missing  # noqa: E402

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(),
    switch(),
    verify(command("test -f {current_path}/REVISION"), attempts=3, wait=0.2),
)
"""


def make_app(root: Path) -> None:
    app = root / "app"
    shutil.copytree(REPO / "examples" / "hello", app, ignore=shutil.ignore_patterns("__pycache__"))
    for index in range(300):
        folder = app / "static" / f"d{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.bin").write_bytes(os.urandom(6000))


def configure(root: Path, hosts: TestHosts, sizes: list[int]) -> None:
    lines = [
        'app = "bench"',
        'deploy_to = "/srv/bench"',
        "keep_releases = 3",
        'shared_dirs = ["log"]',
        'shared_files = [".env"]',
        "",
    ]
    for size in sizes:
        addresses = ", ".join(f'"root@{h.address}"' for h in hosts.hosts[:size])
        for name, extra in ((f"n{size}", []), (f"n{size}nolog", ['log_dir = ""'])):
            lines += [
                f"[environments.{name}]",
                f"hosts = [{addresses}]",
                *extra,
                f"[environments.{name}.ssh]",
                f'key_file = "{hosts.client_key}"',
                f'known_hosts = "{hosts.known_hosts}"',
                "",
            ]
    (root / "deploy.toml").write_text("\n".join(lines))
    (root / "pipelines").mkdir(exist_ok=True)
    (root / "pipelines" / "web.py").write_text(PIPELINE)


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{result.stdout}\n{result.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1,5,20,40")
    parser.add_argument(
        "--log-cost",
        action="store_true",
        help='also deploy without the run\'s log file (log_dir = ""), interleaved: its cost',
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    # a SIGTERM unwinds like Ctrl-C, so the test hosts are torn down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = missing()
    if reason:
        raise SystemExit(reason)
    # measure an installed package: byte-compiled, as pip leaves it (PYTHONDONTWRITEBYTECODE
    # would otherwise make every run compile deploylib from source)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "deploylib")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        make_app(project)
        with tarfile.open(root / "artifact.tar.gz", "w:gz") as tar:
            tar.add(project / "app", arcname=".")
        artifact_size = (root / "artifact.tar.gz").stat().st_size
        shm = Path("/dev/shm")
        on = shm if shm.is_dir() else root
        with (
            tempfile.TemporaryDirectory(prefix="deploylib-bench-", dir=on) as hosts_tmp,
            TestHosts(max(sizes), Path(hosts_tmp)) as hosts,
        ):
            hosts_dir = Path(hosts_tmp)
            configure(project, hosts, sizes)
            print(
                f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
                f"artifact {artifact_size / 1e6:.1f} MB, {args.runs} runs per cell, "
                f"hosts' files in {hosts_dir}\n"
            )
            print(
                "| hosts | deploylib median s | Python floor median s | deploylib / Python floor "
                "| Python floor tuned, median s | deploylib / tuned floor "
                "| bash+ssh floor median s | deploylib / bash floor | SSH connections per host "
                "| exec channels per host | load (1 min) |"
                + (
                    " without the log file, median s | the log file's cost |"
                    if args.log_cost
                    else ""
                )
            )
            print(
                "|---|---|---|---|---|---|---|---|---|---|---|"
                + ("---|---|" if args.log_cost else "")
            )
            results: dict[int, float] = {}
            for size in sizes:
                members = hosts.hosts[:size]
                ours: list[float] = []
                floor: list[float] = []
                python_floor: list[float] = []
                tuned_floor: list[float] = []
                nolog: list[float] = []
                connections: list[float] = []
                channels: list[float] = []
                loads: list[float] = []

                def deploy(env: str, revision: str) -> float:
                    argv = [sys.executable, "-m", "deploylib", "deploy", "--env", env]
                    return timed([*argv, "--revision", revision], project)

                for run in range(args.runs):
                    # every other run the deploy without the log goes first: what comes first
                    # after the pause must not always be the same one
                    if args.log_cost and run % 2:
                        nolog.append(deploy(f"n{size}nolog", f"q{run}"))
                    floor_args = [
                        str(project / "app"),
                        f"floor{run}{size}",
                        str(hosts.client_key),
                        str(hosts.known_hosts),
                        "/srv/floor",
                        *[h.address for h in members],
                    ]
                    loads.append(os.getloadavg()[0])
                    python = [sys.executable, str(REPO / "benchmarks" / "python_floor.py")]
                    python += [floor_args[0], f"py{run}{size}", *floor_args[2:]]
                    tuned = [*python[:2], "--tuned", floor_args[0], f"pt{run}{size}"]
                    tuned += floor_args[2:]
                    # the Python floors first on even runs, after deploylib on odd ones
                    if not run % 2:
                        python_floor.append(timed(python, project))
                        tuned_floor.append(timed(tuned, project))
                    before = [h.connections() for h in members]
                    sessions = [h.exec_sessions() for h in members]
                    ours.append(deploy(f"n{size}", f"r{run}"))
                    after = [h.connections() for h in members]
                    connections.append(
                        statistics.mean(a - b for a, b in zip(after, before, strict=True))
                    )
                    channels.append(
                        statistics.mean(
                            h.exec_sessions() - b for h, b in zip(members, sessions, strict=True)
                        )
                    )
                    if run % 2:
                        tuned_floor.append(timed(tuned, project))
                        python_floor.append(timed(python, project))
                    floor.append(
                        timed(
                            [
                                "bash",
                                str(REPO / "benchmarks" / "floor.sh"),
                                str(project / "app"),
                                f"floor{run}{size}",
                                str(hosts.client_key),
                                str(hosts.known_hosts),
                                "/srv/floor",
                                *[h.address for h in members],
                            ],
                            project,
                        )
                    )
                    if args.log_cost and not run % 2:
                        nolog.append(deploy(f"n{size}nolog", f"q{run}"))
                    time.sleep(1.05)  # a new second: a new release id
                results[size] = statistics.median(ours)
                mine, py, fast, sh = (
                    statistics.median(x) for x in (ours, python_floor, tuned_floor, floor)
                )
                print(
                    f"| {size} | {mine:.2f} | {py:.2f} | {mine / py:.2f} | {fast:.2f} "
                    f"| {mine / fast:.2f} | {sh:.2f} "
                    f"| {mine / sh:.2f} | {statistics.mean(connections):.2f} "
                    f"| {statistics.mean(channels):.1f} | {statistics.mean(loads):.2f} |"
                    + (
                        f" {statistics.median(nolog):.2f} | "
                        f"{statistics.median(ours) / statistics.median(nolog) - 1:+.1%} |"
                        if nolog
                        else ""
                    ),
                    flush=True,
                )
            if 1 in results and max(sizes) in results:
                print(f"\n{max(sizes)} hosts / 1 host: {results[max(sizes)] / results[1]:.2f}x")


if __name__ == "__main__":
    main()
