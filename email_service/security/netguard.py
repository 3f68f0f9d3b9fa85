"""Which mail hosts an account may point at (server-side request forgery guard).

A host name is resolved and *every* address it yields must be public (globally routable)
or admitted by the operator's allow-list (``ALLOWED_MAIL_HOSTS``: host names and CIDRs).
Numeric spellings such as ``127.1``, ``2130706433`` or ``0x7f.0.0.1`` are resolved by the
system resolver like any name, so they meet the same check; IPv4-mapped IPv6 addresses
are judged by the IPv4 address inside. Refusals never say whether a port is open: the
guard decides before any connection is attempted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses (not loopback, private, CGNAT, ...)."""
    address = _unmapped(address)
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
