"""Specifies deploylib.remote.layout: making and checking release ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deploylib.remote.layout import make_release_id, validate_release_id


def test_release_ids() -> None:
    now = datetime(2026, 11, 27, 10, 5, 3, tzinfo=UTC)
    assert make_release_id(now, "0123456789abcdef") == "20261127T100503Z-0123456"
    assert make_release_id(now, "v1.2/$(x)") == "20261127T100503Z-v12x"
    assert make_release_id(now, "") == "20261127T100503Z"
    for bad in ("../etc", "20261127T100503Z-a b", "20261127T100503Z;rm", ""):
        with pytest.raises(ValueError):
            validate_release_id(bad)
