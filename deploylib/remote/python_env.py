"""Virtual environments on a target: one per dependency set, shared by the releases that have
the same one, linked into each as ``.venv``.

<deploy_to>/.deploylib/python/<key>/
  venv/                     the environment (made in place: a venv cannot be moved)
  complete                  written last: the environment is whole
  bundle.tar                what the controller sent (requirements, wheels); gone once installed
releases/<release>/.venv -> ../../.deploylib/python/<key>/venv

An environment whose ``complete`` is missing, or whose interpreter no longer starts (the
system's Python was upgraded), is made again. Removing releases removes every environment no
remaining release links to (``prune_lines``)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from deploylib.commands import Command
from deploylib.remote import sparing
from deploylib.remote.layout import Layout
from deploylib.remote.lock import guard_for, lock_guard

LINK = ".venv"
PIP_QUIET = ("--disable-pip-version-check", "--no-input", "--quiet")


@dataclass(frozen=True)
class EnvPaths:
    layout: Layout
    key: str

    @property
    def root(self) -> str:
        return python_dir(self.layout) + "/" + self.key

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    @property
    def complete(self) -> str:
        return f"{self.root}/complete"

    @property
    def bundle(self) -> str:
        return f"{self.root}/bundle.tar"

    @property
    def unpacked(self) -> str:
        return f"{self.root}/bundle"


def python_dir(layout: Layout) -> str:
    return f"{layout.meta}/python"


def usable_test(paths: EnvPaths) -> str:
    """Shell that passes when the environment is whole, its interpreter starts and finds
    its packages: a system Python upgraded to another minor version still starts through the
    venv's link, but looks for them in a ``lib/pythonX.Y`` the environment does not have."""
    q = shlex.quote
    return (
        f"[ -f {q(paths.complete)} ] && {q(paths.venv + '/bin/python')} -c {q(_FINDS_PACKAGES)} "
        "2>/dev/null"
    )


_FINDS_PACKAGES = (
    "import os, sys, sysconfig; sys.exit(not os.path.isdir(sysconfig.get_path('purelib')))"
)


@dataclass(frozen=True)
class Install:
    """How the environment is made: the interpreter, the installer, where packages come from."""

    python: str = "python3"
    #: "auto" (uv when the target has it, else pip), "uv" or "pip"
    installer: str = "auto"
    #: install only from the wheels sent with the bundle (no index needed on the target)
    wheels: bool = True
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    #: where uv is on the targets; None: on PATH, else ~/.local/bin or ~/.cargo/bin (where
    #: uv's own installer puts it, off the PATH of a non-interactive SSH session)
    uv: str | None = None


def ensure_command(
    layout: Layout, key: str, release: str, install: Install, token: str | None = None
) -> Command:
    """Make the environment ``key`` unless it is usable, then link it into the release."""
    q = shlex.quote
    paths = EnvPaths(layout, key)
    venv_python = paths.venv + "/bin/python"
    requirements = paths.unpacked + "/requirements.txt"
    sources: list[str] = []
    if install.wheels:
        sources += ["--no-index", "--find-links", paths.unpacked + "/wheels"]
    if install.index_url:
        sources += ["--index-url", install.index_url]
    for url in install.extra_index_urls:
        sources += ["--extra-index-url", url]
    pip = shlex.join(
        [venv_python, "-m", "pip", "install", *PIP_QUIET, *sources, "-r", requirements]
    )
    uv_install = '"$uv" ' + shlex.join(
        ["pip", "install", "--quiet", "--python", venv_python, *sources, "-r", requirements]
    )
    with_pip = (
        f'{{ "$py" -m venv {q(paths.venv)} || {{ echo {q(_no_venv(install.python))} >&2; '
        f"exit 1; }}; }} && {pip}"
    )
    with_uv = f'"$uv" venv --quiet --python "$py" {q(paths.venv)} && {uv_install}'
    if install.uv:
        find_uv = f"uv={q(install.uv)}"
    else:
        find_uv = (
            'uv="$(command -v uv || for c in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; '
            'do [ ! -x "$c" ] || { echo "$c"; break; }; done)"'
        )
    no_uv = "uv is not on this host (python_env(installer='uv')): pip install uv, or uv=PATH"
    if install.installer == "uv":
        make = f'{{ {find_uv}; [ -n "$uv" ] || {{ echo {q(no_uv)} >&2; exit 1; }}; {with_uv}; }}'
    elif install.installer == "pip":
        make = with_pip
    else:
        make = f'{{ {find_uv}; if [ -n "$uv" ]; then {with_uv}; else {with_pip}; fi; }}'

    missing = f"{install.python} is not installed on this host (python_env(python=...))"
    build = [
        f'py="$(command -v {q(install.python)})" || {{ echo {q(missing)} >&2; exit 1; }}',
        f"rm -rf {q(paths.complete)} {q(paths.venv)} {q(paths.unpacked)}",
        f"mkdir -p {q(paths.unpacked)}",
        f"tar -xf {q(paths.bundle)} -C {q(paths.unpacked)}",
        make,
        f"rm -rf {q(paths.unpacked)} {q(paths.bundle)}",
        # still this deploy's lock: a build orphaned by a killed deploy never marks an
        # environment that a later deploy is making complete
        *([lock_guard(layout, token)] if token else []),
        f"echo made > {q(paths.complete)}",
        f"echo {q('made python env ' + key)}",
    ]
    release_path = layout.release_path(release)
    link, temporary = f"{release_path}/{LINK}", f"{release_path}/{LINK}.tmp"
    target = f"../../.deploylib/python/{key}/venv"
    script = "\n".join(
        [
            f"if {usable_test(paths)}; then echo {q('reused python env ' + key)}",
            "else " + " && ".join(build) + " || exit 1",
            "fi",
            f"ln -sfn {q(target)} {q(temporary)} && mv -fT {q(temporary)} {q(link)}",
        ]
    )
    return Command(
        script,
        description="python env",
        guard=guard_for(layout, token),
        timeout=None,
    )


def _no_venv(python: str) -> str:
    return (
        f"{python} -m venv failed: the venv module is missing (on Debian/Ubuntu: "
        "apt-get install python3-venv), or install uv on the host"
    )


def prune_lines(layout: Layout) -> Sequence[str]:
    """Shell that removes every environment no release in ``releases/`` links to."""
    q = shlex.quote
    return [
        sparing.globbing(
            f'for d in {q(python_dir(layout))}/*/; do d="${{d%/}}"; [ -d "$d" ] || continue; '
            'k="${d##*/}"; used=; '
            f'for l in {q(layout.releases)}/*/{LINK}; do case "$(readlink "$l" 2>/dev/null)" in '
            '*/"$k"/venv) used=1; break;; esac; done; '
            '[ -n "$used" ] || rm -rf -- "$d" || rc=1; done'
        )
        + " || :"
    ]
