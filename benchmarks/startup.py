"""Start-up cost: `import deploylib`, the DSL a pipeline imports, `deploylib --help`, and a local
deploy of a tiny project.

    python benchmarks/startup.py [--runs N]

Prints medians (and min/max) of wall time over N fresh processes, then the largest costs
``python -X importtime`` reports for ``import deploylib`` and ``deploylib --help`` (cumulative,
one process each). A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOML = """\
app = "bench"
deploy_to = "/srv/bench"
keep_releases = 3
[environments.dev]
hosts = ["local"]
deploy_to = "target"
"""

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, command
pipeline = Pipeline(
    build("tar -czf {artifact} -C app ."),
    push(),
    switch(),
    verify(command("test -f {current_path}/REVISION")),
)
"""


def timed(argv: list[str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def measure(label: str, argv: list[str], runs: int, cwd: Path | None = None) -> None:
    timed(argv, cwd)  # warm the page cache
    samples = [timed(argv, cwd) for _ in range(runs)]
    print(
        f"| {label} | {statistics.median(samples) * 1000:.0f} ms "
        f"| {min(samples) * 1000:.0f} | {max(samples) * 1000:.0f} |"
    )


def import_costs(argv: list[str], top: int = 8) -> list[tuple[int, str]]:
    """The ``top`` largest cumulative import times (microseconds, module) of one process,
    counting only modules that are not inside another listed one's cost."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((int(cumulative), name.strip(), depth))
    roots = [(us, name) for us, name, depth in rows if depth <= 1]
    return sorted(roots, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    # measure an installed package: byte-compiled, as pip leaves it
    package = Path(__file__).resolve().parents[1] / "deploylib"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {runs} runs each\n")
    print("| what | median | min | max |\n|---|---|---|---|")
    measure("python -c pass (floor)", [sys.executable, "-c", "pass"], runs)
    measure("import deploylib", [sys.executable, "-c", "import deploylib"], runs)
    # what a pipeline file loads: the names of the DSL it uses
    dsl = "from deploylib import Pipeline, build, push, switch, verify, command"
    measure("a pipeline's imports (the DSL)", [sys.executable, "-c", dsl], runs)
    measure("deploylib --help", [sys.executable, "-m", "deploylib", "--help"], runs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "deploy.toml").write_text(TOML)
        (root / "pipelines").mkdir()
        (root / "pipelines" / "web.py").write_text(PIPELINE)
        (root / "app").mkdir()
        (root / "app" / "index.html").write_text("hello\n")
        deploy = [
            sys.executable,
            "-m",
            "deploylib",
            "deploy",
            "--env",
            "dev",
            "--revision",
            "bench",
        ]
        samples = []
        for _ in range(runs):
            samples.append(timed(deploy, root))
            time.sleep(1.0)  # one release id per second
        print(
            f"| local deploy (build, push, switch, verify, cleanup) | "
            f"{statistics.median(samples) * 1000:.0f} ms | {min(samples) * 1000:.0f} "
            f"| {max(samples) * 1000:.0f} |"
        )
    for label, argv in (
        ("import deploylib", ["-c", "import deploylib"]),
        ("a pipeline's imports", ["-c", dsl]),
        ("deploylib --help", ["-m", "deploylib", "--help"]),
    ):
        print(f"\n-X importtime, {label}: the largest imports (cumulative)\n")
        print("| module | ms |\n|---|---|")
        for us, name in import_costs(argv):
            print(f"| {name} | {us / 1000:.1f} |")


if __name__ == "__main__":
    main()
