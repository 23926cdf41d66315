"""What python_env() adds to a deploy, per host: a Django-sized dependency set unchanged, then
with one package changed, against the hand-written way (a fresh venv and pip install in every
release).

    pip download -d /tmp/djwheels django==5.2.19 djangorestframework==3.16.1 \\
        whitenoise==6.9.0 gunicorn==23.0.0 requests==2.32.5 pillow==11.3.0 \\
        'psycopg[binary]==3.2.10' django-environ==0.12.0
    pip download --no-deps -d /tmp/djwheels whitenoise==6.8.2
    sudo python benchmarks/python_env.py --wheels /tmp/djwheels [--runs 3] [--hosts 1] \\
        [--installer pip|uv]

The wheels are fetched once beforehand: the benchmark itself sends nothing beyond this machine
and its network namespaces. It brings up SSH hosts in network namespaces
(tests/testbed/sshhosts.py). The controller builds its wheels from that directory (pip's
PIP_NO_INDEX and PIP_FIND_LINKS); the hand-written way installs on each host from the same
directory (the hosts share this machine's file system), so neither pays for an index.

With `--installer uv`, the hosts run this machine's uv (`python_env(uv=...)`: they share its
file system). Per run: a deploy that makes the environment (first), the same dependencies again
(unchanged), one package at another version (changed), and the hand-written pipeline (plain).
Each figure is the median over runs of the slowest host's step seconds (from --events), plus,
for python_env, the controller's one bundle step ("py deps").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed.sshhosts import TestHosts, missing  # noqa: E402

PIPELINE = """\
from deploylib import Pipeline, build, push, switch, verify, command, python_env

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    python_env(installer="{installer}", uv={uv!r}),
    switch(),
    verify(command("{{current_path}}/.venv/bin/python -c 'import django, whitenoise'")),
)
"""

PLAIN = """\
from deploylib import Pipeline, build, push, run, switch, verify, command

pipeline = Pipeline(
    build("tar -czf {{artifact}} -C app ."),
    push(),
    run("python3 -m venv .venv && .venv/bin/pip install -q --no-index --find-links {wheels} "
        "-r requirements.txt", cwd="{{release_path}}", name="venv+pip"),
    switch(),
    verify(command("{{current_path}}/.venv/bin/python -c 'import django, whitenoise'")),
)
"""

PINS = [
    "django==5.2.19",
    "djangorestframework==3.16.1",
    "gunicorn==23.0.0",
    "requests==2.32.5",
    "pillow==11.3.0",
    "psycopg[binary]==3.2.10",
    "django-environ==0.12.0",
]


def requirements(whitenoise: str) -> str:
    return "\n".join([*PINS, f"whitenoise=={whitenoise}"]) + "\n"


def deploy(project: Path, pipeline: str, revision: str) -> dict[str, float]:
    """Seconds per step: the slowest host's."""
    events = project / f"events-{revision}.jsonl"
    argv = [sys.executable, "-m", "deploylib", "deploy", "--env", "bench"]
    argv += ["--pipeline", pipeline, "--revision", revision, "--events", str(events)]
    done = subprocess.run(argv, cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"deploy {revision} failed:\n{done.stdout}\n{done.stderr}")
    seconds: dict[str, float] = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "step.ok":
            step = str(event["step"])
            seconds[step] = max(seconds.get(step, 0.0), float(event["seconds"]))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheels", required=True, type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--installer", default="pip", choices=["pip", "uv", "auto"])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = missing()
    if reason:
        raise SystemExit(reason)
    wheels = args.wheels.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "project"
        (project / "pipelines").mkdir(parents=True)
        (project / "app").mkdir()
        (project / "app" / "app.py").write_text("print('hello')\n")
        (project / "pipelines" / "env.py").write_text(
            PIPELINE.format(installer=args.installer, uv=shutil.which("uv"))
        )
        (project / "pipelines" / "plain.py").write_text(PLAIN.format(wheels=wheels))
        os.environ.update(
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(wheels),
            XDG_CACHE_HOME=str(root / "cache"),
        )
        with TestHosts(args.hosts, root / "hosts") as hosts:
            addresses = ", ".join(f'"root@{h.address}"' for h in hosts.hosts)
            (project / "deploy.toml").write_text(
                'app = "bench"\ndeploy_to = "/srv/bench"\nkeep_releases = 3\n\n'
                f"[environments.bench]\nhosts = [{addresses}]\n"
                f'[environments.bench.ssh]\nkey_file = "{hosts.client_key}"\n'
                f'known_hosts = "{hosts.known_hosts}"\n'
            )
            labels = ("first", "unchanged", "changed", "plain")
            rows: dict[str, list[float]] = {label: [] for label in labels}
            bundle: dict[str, list[float]] = {"first": [], "unchanged": [], "changed": []}
            for run in range(args.runs):
                # a new set each run: every "first" makes its environment from nothing
                requirement_file = project / "app" / "requirements.txt"
                requirement_file.write_text(requirements("6.9.0") + f"# run {run}\n")
                for label, revision in (("first", "a"), ("unchanged", "b")):
                    steps = deploy(project, "env", f"{revision}{run}")
                    rows[label].append(steps["python_env"])
                    bundle[label].append(steps["py deps"])
                requirement_file.write_text(requirements("6.8.2") + f"# run {run}\n")
                steps = deploy(project, "env", f"c{run}")
                rows["changed"].append(steps["python_env"])
                bundle["changed"].append(steps["py deps"])
                rows["plain"].append(deploy(project, "plain", f"p{run}")["venv+pip"])
            count = len(list(wheels.glob("*.whl")))
            print(
                f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.hosts} "
                f"host(s), installer {args.installer}, {count} wheels in the set's directory, "
                f"median of {args.runs} runs\n"
            )
            print("| deploy | per host, s | on the controller once, s |")
            print("|---|---|---|")
            for label, values in rows.items():
                once = f"{statistics.median(bundle[label]):.2f}" if label in bundle else "-"
                print(f"| {label} | {statistics.median(values):.2f} | {once} |")


if __name__ == "__main__":
    main()
