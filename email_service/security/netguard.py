"""Which mail hosts an account may point at (server-side request forgery guard).

A host name is resolved and *every* address it yields must be public (globally routable)
or admitted by the operator's allow-list (``ALLOWED_MAIL_HOSTS``: host names and CIDRs).
Numeric spellings such as ``127.1``, ``2130706433`` or ``0x7f.0.0.1`` are resolved by the
system resolver like any name, so they meet the same check; IPv4-mapped IPv6 addresses
are judged by the IPv4 address inside, and so are 6to4 (2002::/16) and NAT64
(64:ff9b::/96) addresses. "Public" is decided by our own table of the IANA special-purpose
registries (:data:`SPECIAL_PURPOSE`), not by ``ipaddress.is_global`` alone, whose answers
changed between patch releases (CVE-2024-4032: 3.11.7 called ``192.0.0.8`` and
``2002:7f00:1::1`` global). Refusals never say whether a port is open: the guard decides
before any connection is attempted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from email_service.errors import BlockedHostError, ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]
# RFC 1035 §2.3.4: a full domain name is at most 253 characters in text form.
MAX_HOST_LENGTH = 253


def system_resolve(host: str) -> list[str]:
    """All addresses the system resolver gives for ``host``."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ValidationError(f"mail host {host!r} cannot be resolved", field="host") from None
    return sorted({str(info[4][0]) for info in infos})


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and later), plus
# multicast, reserved and deprecated ranges: never an account's mail server.
SPECIAL_PURPOSE: tuple[_Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # this network (RFC 791)
        "10.0.0.0/8",  # private (RFC 1918)
        "100.64.0.0/10",  # shared address space, CGNAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link local
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (RFC 6890), all of it
        "192.0.2.0/24",  # TEST-NET-1
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast (RFC 7526)
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
        "::/96",  # unspecified, loopback, deprecated IPv4-compatible (RFC 4291)
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation (RFC 8215)
        "100::/64",  # discard-only (RFC 6666)
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID, ...
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
        "fc00::/7",  # unique local
        "fe80::/10",  # link local
        "fec0::/10",  # deprecated site local
        "ff00::/8",  # multicast
    )
)
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # RFC 3056: bits 16-47 are an IPv4 address
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4


def _unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 address, else the address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in SIX_TO_FOUR:
            return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses (not loopback, private, CGNAT, ...)."""
    address = _unmapped(address)
    if any(address in net for net in SPECIAL_PURPOSE if net.version == address.version):
        return False
    return address.is_global and not address.is_multicast and not address.is_reserved


@dataclass(frozen=True)
class AllowList:
    """The operator's admitted host names and networks."""

    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AllowList:
        """Build from ALLOWED_MAIL_HOSTS entries (``host``, ``1.2.3.4``, ``10.0.0.0/8``)."""
        names: set[str] = set()
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def admits(self, host: str, address: IPAddress) -> bool:
        """True if the host name or the address is on the list."""
        if host.lower().rstrip(".") in self.names:
            return True
        address = _unmapped(address)
        return any(address in net for net in self.networks if net.version == address.version)


def validate_host_syntax(host: str) -> str:
    """Reject what cannot be a host name before any lookup."""
    host = host.strip()
    if not host or len(host) > MAX_HOST_LENGTH:
        raise ValidationError("host must be 1-253 characters", field="host")
    if any(c.isspace() or ord(c) < 0x21 or c in "/\\@?#" for c in host):
        raise ValidationError("host contains characters not allowed in a host name", field="host")
    return host


def check_host(host: str, allow: AllowList, resolve: Resolver = system_resolve) -> list[str]:
    """Return the addresses of ``host`` if all may be dialled; raise BlockedHostError if not."""
    host = validate_host_syntax(host)
    addresses = resolve(host)
    if not addresses:
        raise ValidationError(f"mail host {host!r} cannot be resolved", field="host")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not (is_public(address) or allow.admits(host, address)):
            raise BlockedHostError(
                f"mail host {host!r} resolves to a non-public address; "
                "an operator must add it to ALLOWED_MAIL_HOSTS",
                host=host,
            )
    return addresses


def check_url(
    url: str,
    allow: AllowList,
    what: str,
    setting: str,
    *,
    https_only: bool = False,
    resolve: Resolver = system_resolve,
) -> None:
    """Raise unless ``url`` is http(s), carries no credentials and its host may be dialled."""
    parts = urlsplit(url)
    schemes = ("https",) if https_only else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        kind = "an https" if https_only else "an http(s)"
        raise ValidationError(f"url must be {kind} URL with a host", field="url")
    if parts.username or parts.password:
        raise ValidationError("url must not carry credentials", field="url")
    try:
        check_host(parts.hostname, allow, resolve)
    except BlockedHostError:
        raise BlockedHostError(
            f"{what} host {parts.hostname!r} resolves to a non-public address; "
            f"an operator must add it to {setting}",
            host=parts.hostname,
        ) from None
