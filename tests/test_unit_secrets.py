"""Specifies deploylib.secrets: a Secret prints masked, the Redactor masks known values."""

from __future__ import annotations

from deploylib import Secret
from deploylib.secrets import Redactor


def test_secret_prints_masked_everywhere() -> None:
    secret = Secret("topsecret")
    assert str(secret) == repr(secret).replace("Secret(", "").rstrip(")").strip("'") == "***"
    assert f"{secret}" == "***" and secret.reveal() == "topsecret"
    redactor = Redactor(["topsecret", "ab"])
    assert redactor.redact("x topsecret y ab") == "x *** y ab"  # 2 characters are not searched
