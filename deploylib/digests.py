"""The sha256 of a local file, read once per process: the artifact is checked on every host
it is sent to against one digest, so every host gets the same bytes."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

#: how much of a file is read (and sent) at a time
CHUNK = 1 << 16

_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """The sha256 of the file at ``path``, read once per process for every host it is sent
    to (a changed file, by size or mtime, is read again)."""
    info = path.stat()
    key = (str(path), info.st_size, info.st_mtime_ns)
    with _digests_lock:
        known = _digests.get(key)
        if known is None:
            digest = hashlib.sha256()
            with path.open("rb") as file:
                while block := file.read(CHUNK):
                    digest.update(block)
            known = _digests[key] = digest.hexdigest()
        return known


def file_chunks(path: Path) -> Iterator[bytes]:
    """The file at ``path`` in blocks of ``CHUNK`` bytes, read as they are asked for."""
    with path.open("rb") as file:
        while block := file.read(CHUNK):
            yield block
