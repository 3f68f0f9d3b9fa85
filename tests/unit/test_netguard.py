"""Mail host guard: every spelling of a non-public address is refused unless allowed."""

from __future__ import annotations

import pytest

from email_service.errors import BlockedHostError, ValidationError
from email_service.security.netguard import AllowList, check_host, check_url, system_resolve

NOBODY = AllowList.parse([])

BLOCKED = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "localhost",
    "::1",
    "::ffff:127.0.0.1",
    "0.0.0.0",
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "fe80::1",
    "fc00::1",
    "224.0.0.1",
    "240.0.0.1",
]


@pytest.mark.parametrize("host", BLOCKED)
def test_non_public_addresses_are_blocked(host: str) -> None:
    with pytest.raises(BlockedHostError) as caught:
        check_host(host, NOBODY)
    assert "ALLOWED_MAIL_HOSTS" in caught.value.message


def test_public_addresses_pass_without_lookup() -> None:
    assert check_host("93.184.215.14", NOBODY) == ["93.184.215.14"]
    assert check_host("2606:4700::1", NOBODY) == ["2606:4700::1"]


def test_names_are_judged_by_every_address() -> None:
    def resolver(addresses: list[str]):  # type: ignore[no-untyped-def]
        return lambda _host: addresses

    assert check_host("mail.example", NOBODY, resolver(["93.184.215.14"]))
    with pytest.raises(BlockedHostError):  # one private address among public ones is enough
        check_host("rebind.example", NOBODY, resolver(["93.184.215.14", "10.0.0.1"]))


@pytest.mark.parametrize(
    ("entries", "host", "allowed"),
    [
        (["127.0.0.0/8"], "127.1", True),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", True),
        (["127.0.0.1"], "2130706433", True),
        (["localhost"], "localhost", True),
        (["LOCALHOST."], "localhost", True),
        (["10.0.0.0/8"], "127.0.0.1", False),
        (["dovecot"], "localhost", False),
        (["::1"], "127.0.0.1", False),
    ],
)
def test_allow_list(entries: list[str], host: str, allowed: bool) -> None:
    allow = AllowList.parse(entries)
    if allowed:
        assert check_host(host, allow)
    else:
        with pytest.raises(BlockedHostError):
            check_host(host, allow)


@pytest.mark.parametrize("host", ["", " ", "a b", "x/y", "user@host", "h\r\nx", "a" * 254])
def test_malformed_hosts(host: str) -> None:
    with pytest.raises(ValidationError):
        check_host(host, NOBODY)


def test_unresolvable_name() -> None:
    with pytest.raises(ValidationError, match="cannot be resolved"):
        system_resolve("no-such-host.invalid")


def test_check_url_https_only_credentials_and_the_setting_named() -> None:
    public = lambda host: ["93.184.215.14"]  # noqa: E731
    private = lambda host: ["10.0.0.7"]  # noqa: E731
    check_url("https://list.example/u?x=1", NOBODY, "unsubscribe", "ALLOWED_X", resolve=public)
    with pytest.raises(ValidationError, match="https URL"):
        check_url("http://list.example/u", NOBODY, "unsubscribe", "X", https_only=True)
    with pytest.raises(ValidationError, match="credentials"):
        check_url("https://u:p@list.example/", NOBODY, "unsubscribe", "X", resolve=public)
    with pytest.raises(BlockedHostError, match="ALLOWED_X"):
        check_url("https://list.example/", NOBODY, "unsubscribe", "ALLOWED_X", resolve=private)
    allowed = AllowList.parse(["10.0.0.0/8"])
    check_url("https://list.example/", allowed, "unsubscribe", "ALLOWED_X", resolve=private)
