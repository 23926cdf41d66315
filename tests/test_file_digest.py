"""The artifact is hashed once per run, not once per host: ``file_digest`` reads a file the first
time it is asked, and again only when the file changed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from deploylib.digests import file_digest


def test_a_file_is_hashed_once_for_every_host_it_goes_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = tmp_path / "app.tar.gz"
    artifact.write_bytes(b"release one" * 10_000)
    first = file_digest(artifact)
    assert first == hashlib.sha256(artifact.read_bytes()).hexdigest()

    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    assert [file_digest(artifact) for _ in range(20)] == [first] * 20
    assert opened == []  # 20 more hosts, no more reads

    second = b"release two, longer" * 10_000
    artifact.write_bytes(second)  # another size: read again
    opened.clear()
    assert file_digest(artifact) == hashlib.sha256(second).hexdigest()
    assert opened == [artifact]
