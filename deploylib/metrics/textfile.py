"""``metrics_file``: the metrics in a file for node_exporter's textfile collector, kept across runs.

Each run reads the file back, adds itself to what it holds and replaces it whole: the new text
goes into a temporary file in the same directory (named ``.<name>.*.tmp``, which the collector,
reading only ``*.prom``, ignores), is flushed to disk and renamed over the file, so a reader
sees the old file or the new one, never part of one, and a crash leaves one or the other. The
read, the addition and the rename happen under an exclusive ``flock`` of the sibling file
``<name>.lock`` (kept: removing a lock file races with its next user), so deploys of several
environments that share the file, in as many processes or threads, never lose an update:
``flock`` locks an open file, not a process, so two threads exclude each other as two processes do.

Nothing here fails a deploy: each problem is a warning, returned as a line. A directory that
does not exist is one of them: deploylib does not make it (a typo would otherwise write where
no collector reads).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from deploylib.metrics import series
from deploylib.metrics.series import RunRecord, Totals

#: how long a run waits for another writer's lock before it gives up (with a warning)
LOCK_WAIT = 10.0
#: the mode of a new file: the collector (another user) reads it
NEW_FILE_MODE = 0o644


class LockTimeout(TimeoutError):
    """Another writer held the lock for longer than the wait."""


def update(path: Path, record: RunRecord, *, lock_wait: float = LOCK_WAIT) -> list[str]:
    """Count ``record`` in the file at ``path``; return the warnings (empty: written)."""
    where = f"metrics_file {path}"
    if not path.parent.is_dir():
        return [f"{where}: not written: its directory {path.parent} does not exist"]
    warnings: list[str] = []
    try:
        with locked(path.with_name(path.name + ".lock"), lock_wait):
            totals, problems = _read(path)
            warnings += [f"{where}: {problem}" for problem in problems]
            replace_file(path, series.render(series.add(totals, record)))
    except LockTimeout:
        warnings.append(f"{where}: not written: another writer held its lock for {lock_wait:g} s")
    except OSError as exc:
        warnings.append(f"{where}: not written: {exc.__class__.__name__}: {exc.strerror or exc}")
    return warnings


def _read(path: Path) -> tuple[Totals, list[str]]:
    """The totals the file holds (none if there is no file); a file that does not read is
    started over, and said so."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Totals(), []
    except UnicodeDecodeError:
        return Totals(), ["not UTF-8 text; its counts start over"]
    try:
        return series.parse_text(text)
    except ValueError as exc:
        return Totals(), [f"not in Prometheus's text format ({exc}); its counts start over"]


@contextlib.contextmanager
def locked(lock_path: Path, wait: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` of ``lock_path`` (made if missing); ``LockTimeout`` when
    another holder keeps it for ``wait`` seconds."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, NEW_FILE_MODE)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(lock_path) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk and rename it over
    ``path`` (rename(2): atomic); the file keeps its mode (new ones get 0644)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.rename(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk; not every filesystem can
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
