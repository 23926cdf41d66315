"""Delta releases over real SSH: a second deploy of a 50 MB / 5,000-file artifact where 1% of the
files changed, with ``push()`` (the whole artifact) and ``push(delta=True)``, against the
Python floor (benchmarks/python_floor.py: one connection, one exec channel, the whole artifact
streamed into one script).

    sudo python benchmarks/delta.py [--runs 5] [--hosts 1] [--files 5000] [--size 10000]

Brings up SSH hosts in network namespaces (tests/testbed/sshhosts.py), deploys once with each
pipeline, then per run changes 1% of the files (new random bytes) and deploys again with each,
interleaved, in fresh processes. Prints median wall seconds and the bytes sent to each host
(what the bridge's side of its veth carried, SSH's overhead included) per deploy.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed.sshhosts import TestHosts, missing  # noqa: E402

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push({delta}),
    switch(),
    verify(command("test -f {{current_path}}/REVISION"), attempts=3, wait=0.2),
)
"""


def make_app(app: Path, files: int, size: int) -> list[Path]:
    paths = []
    for index in range(files):
        folder = app / "static" / f"d{index % 50}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def configure(root: Path, hosts: TestHosts, count: int) -> None:
    addresses = ", ".join(f'"root@{h.address}"' for h in hosts.hosts[:count])
    lines = ['app = "bench"', "keep_releases = 3", 'shared_dirs = ["log"]', ""]
    for name in ("full", "delta"):
        lines += [
            f"[environments.{name}]",
            f"hosts = [{addresses}]",
            f'deploy_to = "/srv/{name}"',
            f'pipeline = "{name}"',
            f"[environments.{name}.ssh]",
            f'key_file = "{hosts.client_key}"',
            f'known_hosts = "{hosts.known_hosts}"',
            "",
        ]
    (root / "deploy.toml").write_text("\n".join(lines))
    (root / "pipelines").mkdir(exist_ok=True)
    (root / "pipelines" / "full.py").write_text(PIPELINE.format(delta=""))
    (root / "pipelines" / "delta.py").write_text(PIPELINE.format(delta="delta=True"))


def sent(veths: list[str]) -> int:
    """Bytes the bridge's side of each host's veth sent so far, all hosts."""
    return sum(int(Path(f"/sys/class/net/{v}/statistics/tx_bytes").read_text()) for v in veths)


def timed(argv: list[str], cwd: Path, veths: list[str]) -> tuple[float, int]:
    before = sent(veths)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv[:6]} failed:\n{result.stdout}\n{result.stderr}")
    if "sending the whole artifact" in result.stdout:
        raise SystemExit(f"the delta fell back to the whole artifact:\n{result.stdout}")
    return took, (sent(veths) - before) // len(veths)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=10_000, help="bytes per file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = missing()
    if reason:
        raise SystemExit(reason)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "deploylib")], check=True)
    chooser = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        paths = make_app(project / "app", args.files, args.size)
        with TestHosts(args.hosts, root / "hosts") as hosts:
            configure(project, hosts, args.hosts)
            veths = [h.veth for h in hosts.hosts[: args.hosts]]
            members = [h.address for h in hosts.hosts[: args.hosts]]

            def deploy(env: str, revision: str) -> tuple[float, int]:
                argv = [sys.executable, "-m", "deploylib", "deploy", "--env", env]
                return timed([*argv, "--revision", revision], project, veths)

            def python_floor(release: str) -> tuple[float, int]:
                argv = [sys.executable, str(REPO / "benchmarks" / "python_floor.py")]
                argv += [str(project / "app"), release, str(hosts.client_key)]
                argv += [str(hosts.known_hosts), "/srv/floor", *members]
                return timed(argv, project, veths)

            deploy("full", "first0")
            deploy("delta", "first0")
            time.sleep(1.05)
            results: dict[str, list[tuple[float, int]]] = {"full": [], "delta": [], "floor": []}
            for run in range(args.runs):
                for path in chooser.sample(paths, max(1, args.files // 100)):
                    path.write_bytes(os.urandom(args.size))
                order = ["full", "delta", "floor"]
                order = order[run % 3 :] + order[: run % 3]
                for kind in order:
                    if kind == "floor":
                        results[kind].append(python_floor(f"py{run}"))
                    else:
                        results[kind].append(deploy(kind, f"r{run}"))
                time.sleep(1.05)  # a new second: a new release id
            total = sum(p.stat().st_size for p in paths)
            print(
                f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.hosts} host(s), "
                f"{args.files} files, {total / 1e6:.0f} MB, {max(1, args.files // 100)} files "
                f"changed per deploy, {args.runs} runs, load {os.getloadavg()[0]:.2f}\n"
            )
            print("| second deploy | median s | MB sent per host | / Python floor |")
            print("|---|---|---|---|")
            floor = statistics.median(t for t, _ in results["floor"])
            for kind, label in (
                ("floor", "Python floor (whole artifact)"),
                ("full", "deploylib push()"),
                ("delta", "deploylib push(delta=True)"),
            ):
                seconds = statistics.median(t for t, _ in results[kind])
                sent_mb = statistics.median(b for _, b in results[kind]) / 1e6
                print(f"| {label} | {seconds:.2f} | {sent_mb:.2f} | {seconds / floor:.2f} |")


if __name__ == "__main__":
    main()
