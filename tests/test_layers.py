"""The package's layers: each module imports only from its own layer or lower ones, and no two
modules import each other, directly or around a loop. Read from the source with ``ast``;
imports under ``if TYPE_CHECKING:`` (types only, nothing runs) do not count.

The layers, lowest first, are drawn in docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deploylib"

LAYERS: list[set[str]] = [
    # what everything else builds on: values, errors, text, the on-target layout
    {
        "hosts",
        "collector",
        "workers",
        "text",
        "markup",
        "locks",
        "errors",
        "secrets",
        "envfile",
        "commands",
        "digests",
        "placeholders",
        "interpolation",
        "remote.layout",
        "remote.free_space",
        "pipeline_name",
        "remote.gnu",
        "remote.sparing",
        "whereabouts",
        "python_deps",
        "schema_state",
        "slots",
        "stdin_env",
        "sudo",
        "prometheus_api",
        "metrics.series",
        "metrics.gateway_api",
    },
    # configuration, requests from the controller, the commands run on targets
    {
        "config",
        "config.schema",
        "config.loading",
        "config.variables",
        "config.environment",
        "config.host_list",
        "config.paths",
        "probes",
        "repository",
        "remote",
        "remote.state",
        "remote.reading",
        "remote.lock",
        "remote.log",
        "remote.release",
        "remote.delta",
        "release_delta",
        "remote.images",
        "remote.swarm",
        "remote.oneoff",
        "rollback_target",
        "remote.slots",
        "remote.python_env",
        "remote.provision",
        "remote.firewall",
        "firewall",
        "wheelhouse",
        "metrics",
        "metrics.textfile",
        "metrics.pushgateway",
    },
    # where commands run, and what a step sees
    {
        "backends",
        "backends.base",
        "backends.local",
        "backends.ssh",
        "backends.ssh.failures",
        "backends.ssh.host_keys",
        "backends.ssh.keepalive",
        "backends.ssh.tcp",
        "backends.ssh.opening",
        "backends.ssh.connection",
        "backends.ssh.shell",
        "backends.ssh.channels",
        "backends.ssh.backend",
        "backends.printer",
        "backends.fake",
        "context",
    },
    # what to run: the pipeline DSL, checks, strategies, scaffolding
    {
        "checks",
        "steps",
        "steps.base",
        "steps.builtin",
        "steps.custom",
        "steps.dsl",
        "steps.python_env",
        "steps.migrations",
        "steps.slots",
        "steps.service",
        "strategies",
        "strategies.base",
        "strategies.all",
        "strategies.rolling",
        "strategies.canary",
        "strategies.blue_green",
        "pipeline",
        "scaffold",
        "presets",
        "ci_workflow",
        "recipes",
        "recipes.gunicorn",
        "recipes.gunicorn_slots",
        "recipes.container",
        "recipes.service",
        "recipes.systemd",
        "recipes.supervisord",
    },
    # the run's plumbing and how it is shown
    {
        "fleet",
        "reporting",
        "reporting.events",
        "reporting.schema",
        "reporting.log_file",
        "reporting.redacting",
        "reporting.console",
        "reporting.live",
        "reporting.json_lines",
        "reporting.recording",
        "reporting.webhook",
        "views",
        "terminal",
        "run_state",
        "signal_scope",
        "check_retries",
        "streaming",
    },
    # a deploy or rollback of a fleet: its locks, steps, records, recovery, and their order
    {
        "fleet_lock",
        "step_execution",
        "records",
        "recovery",
        "schema_rollback",
        "blue_green",
        "run_metrics",
        "runner",
    },
    # the tasks as functions (how their runs are wired, the read-only ones), and the test kit
    {
        "actions",
        "wiring",
        "source",
        "inspection",
        "testing",
        "project",
        "oneoff",
        "provisioning",
        "port_needs",
    },
    # the command line
    # the command line, and the package's exports (the DSL, and the API on first use)
    {"tasks", "cli", "__main__", ""},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def runtime_imports(path: Path) -> set[str]:
    """The deploylib modules ``path`` imports when it runs (type-only imports left out)."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(inner) for inner in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deploylib"):
            base = node.module.removeprefix("deploylib").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}".lstrip(".")
                found.add(candidate if candidate in ALL else base)
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("deploylib").lstrip(".")
                for a in node.names
                if a.name.startswith("deploylib")
            }
    return found - {module_name(path)}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
ALL = set(MODULES)


def layer_of(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    raise AssertionError(f"deploylib.{module} is in no layer: add it to LAYERS and the docs")


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {imported} (layer {layer_of(imported)})"
        for module, path in MODULES.items()
        for imported in runtime_imports(path)
        if imported in ALL and layer_of(imported) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = {m: {i for i in runtime_imports(p) if i in ALL} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycle = [*path[path.index(imported) :], imported]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
