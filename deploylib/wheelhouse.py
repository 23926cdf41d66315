"""``python -m deploylib.wheelhouse``: the bundle of a release's dependency set, made on this
machine once per set and kept in a cache by key (see ``steps.python_env``).

A bundle is an uncompressed tar (wheels are compressed already)::

    requirements.txt     what the target's installer reads
    src/...              the release's requirements files it includes (``-r``), by path
    wheels/*.whl         with --wheels: every package, built here with ``pip wheel``
    manifest.json        last: the sha256 of every other file (a cached bundle is checked
                         against it before it is used again, and made again when it disagrees)

Made under a temporary name and renamed into place: a bundle in the cache is whole."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import posixpath
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from deploylib.python_deps import DependencyError, read_dependency_set, requirements_text

#: the last member of a bundle: the sha256 of every other file, by name
MANIFEST = "manifest.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploylib.wheelhouse")
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--requirements")
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--wheels", action="store_true")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--index-url")
    parser.add_argument("--extra-index-url", action="append", default=[])
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_file():
        problem = damage(out)
        if problem is None:
            print(f"python bundle {out.stem}: made before, kept in {out.parent}")
            return 0
        print(f"python bundle {out}: {problem}; made again", file=sys.stderr)
        out.unlink()
    try:
        deps = read_dependency_set(args.artifact, args.requirements, args.extra)
        text, included = requirements_text(deps)
    except DependencyError as exc:
        print(f"python_env: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=out.parent) as tmp:
        root = Path(tmp) / "bundle"
        root.mkdir()
        if deps.kind == "requirements":
            for name, data in deps.files:
                _write(root / "src" / name, data)
            text = f"-r src/{deps.source}\n"
        else:
            for name, data in included.items():
                _write(root / "src" / name, data)
        (root / "requirements.txt").write_text(text)
        count = 0
        if args.wheels:
            wheels = root / "wheels"
            wheels.mkdir()
            pip = [args.python, "-m", "pip", "wheel", "--disable-pip-version-check"]
            pip += ["--no-input", "--quiet", "--wheel-dir", str(wheels)]
            if args.index_url:
                pip += ["--index-url", args.index_url]
            for url in args.extra_index_url:
                pip += ["--extra-index-url", url]
            pip += ["-r", str(root / "requirements.txt")]
            done = subprocess.run(pip, cwd=root, check=False)
            if done.returncode != 0:
                print(
                    f"python_env: building the wheels of {deps.source} failed "
                    f"({' '.join(pip[:4])} exit {done.returncode})",
                    file=sys.stderr,
                )
                return 1
            count = len(list(wheels.glob("*.whl")))
        partial = Path(tmp) / "bundle.tar"
        digests: dict[str, str] = {}
        with tarfile.open(partial, "w") as tar:
            for path in sorted(root.rglob("*")):
                name = posixpath.join(*path.relative_to(root).parts)
                tar.add(path, arcname=name, recursive=False)
                if path.is_file():
                    digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
            # last: a bundle cut short (a full disk, a crash) lacks it or disagrees with it
            manifest = json.dumps(digests, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
        os.replace(partial, out)
    size = out.stat().st_size / 1e6
    what = f"{count} wheel{'s' if count != 1 else ''}, " if args.wheels else ""
    print(f"python bundle {out.stem} from {deps.source}: {what}{size:.1f} MB")
    return 0


def damage(bundle: Path) -> str | None:
    """What is wrong with a bundle in the cache (truncated, altered, not a tar, made
    without a manifest), or None when every file is there as it was made."""
    try:
        with tarfile.open(bundle, "r:") as tar:
            found: dict[str, str] = {}
            listed: object = None
            for member in tar:
                if not member.isfile():
                    continue
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                if len(data) != member.size:
                    return f"{member.name} is cut short"
                if member.name == MANIFEST:
                    listed = json.loads(data)
                else:
                    found[member.name] = hashlib.sha256(data).hexdigest()
    except (OSError, tarfile.TarError, ValueError) as exc:
        return f"not a whole bundle ({exc})"
    if listed is None:
        return f"no {MANIFEST} (cut short, or made by an older deploylib)"
    if listed != found or "requirements.txt" not in found:
        return f"its files disagree with its {MANIFEST}"
    return None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


if __name__ == "__main__":
    raise SystemExit(main())
