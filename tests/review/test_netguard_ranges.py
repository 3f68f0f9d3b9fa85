"""Finding 5: IANA special-purpose ranges are denied by our own table, whatever the
interpreter's ``ipaddress`` thinks (6to4 and NAT64 judged by the IPv4 address inside), and
a production start refuses an interpreter without the fixes for CVE-2024-4032 and
CVE-2024-6923 unless the operator says otherwise."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from email_service.config import with_generated_secrets
from email_service.errors import ConfigError
from email_service.security import interpreter
from email_service.security.netguard import is_public
from tests.conftest import _settings

NOT_PUBLIC = [
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "2002:a00:1::1",  # 6to4 around 10.0.0.1
    "2002:c0a8:101::1",  # 6to4 around 192.168.1.1
    "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
    "64:ff9b:1::8.8.8.8",  # local-use NAT64 (RFC 8215)
    "192.0.0.8",
    "192.0.0.9",
    "192.0.0.170",
    "2001::1",  # Teredo
    "2001:2::1",  # benchmarking
    "2001:1::1",
    "2001:db8::1",
    "3fff::1",
    "100::1",
    "5f00::1",
    "::7f00:1",  # IPv4-compatible (deprecated)
    "::ffff:10.0.0.1",
    "fec0::1",
    "198.18.0.1",
    "192.88.99.1",
    "240.0.0.1",
    "0.1.2.3",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize("text", NOT_PUBLIC)
def test_special_purpose_addresses_are_not_public(text: str) -> None:
    assert not is_public(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_stay_public(text: str) -> None:
    assert is_public(ipaddress.ip_address(text))


def test_the_table_does_not_trust_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an ``ipaddress`` that calls everything global (as 3.11.7 did for these), the
    table still refuses."""
    monkeypatch.setattr(ipaddress.IPv4Address, "is_global", property(lambda self: True))
    monkeypatch.setattr(ipaddress.IPv6Address, "is_global", property(lambda self: True))
    for text in NOT_PUBLIC:
        assert not is_public(ipaddress.ip_address(text)), text


def test_an_unpatched_interpreter_is_named() -> None:
    old_policy = SimpleNamespace()  # no verify_generated_headers: before the CVE-2024-6923 fix
    found = interpreter.problems(policy=old_policy, global_probe=lambda: True)
    assert any("CVE-2024-6923" in p for p in found)
    assert any("CVE-2024-4032" in p for p in found)
    assert (
        interpreter.problems(
            policy=SimpleNamespace(verify_generated_headers=True), global_probe=lambda: False
        )
        == []
    )


def test_production_refuses_an_unpatched_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(interpreter, "problems", lambda: ["CVE-2024-4032: test"])
    prod = _settings(tmp_path).model_copy(update={"flask_env": "production"})
    with pytest.raises(ConfigError, match="CVE-2024-4032"):
        with_generated_secrets(prod, logging.getLogger("t").warning)
    allowed = prod.model_copy(update={"allow_unpatched_python": True})
    with caplog.at_level(logging.WARNING):
        with_generated_secrets(allowed, logging.getLogger("t").warning)
    assert "CVE-2024-4032" in caplog.text
    dev = _settings(tmp_path)
    with caplog.at_level(logging.WARNING):
        with_generated_secrets(dev, logging.getLogger("t").warning)
