"""Which servers an account may use: the operator's defaults and allow-list, else public only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from email_service.config import Security, Settings
from email_service.security.netguard import AllowList, Resolver, check_host, system_resolve

Protocol = Literal["imap", "smtp"]


@dataclass(frozen=True)
class Endpoint:
    """A mail server endpoint."""

    host: str
    port: int
    security: Security


@dataclass(frozen=True)
class MailHostPolicy:
    """Defaults for new accounts, and the check applied to every host an account names."""

    imap_default: Endpoint
    smtp_default: Endpoint
    allow: AllowList
    resolve: Resolver = field(default=system_resolve)

    @classmethod
    def from_settings(cls, settings: Settings) -> MailHostPolicy:
        """Build from IMAP_*/SMTP_* defaults and ALLOWED_MAIL_HOSTS."""
        return cls(
            imap_default=Endpoint(settings.imap_host, settings.imap_port, settings.imap_security),
            smtp_default=Endpoint(settings.smtp_host, settings.smtp_port, settings.smtp_security),
            allow=AllowList.parse(settings.allowed_mail_hosts),
        )

    def default(self, protocol: Protocol) -> Endpoint:
        """The operator's default endpoint for ``protocol``."""
        return self.imap_default if protocol == "imap" else self.smtp_default

    def addresses(self, endpoint: Endpoint, protocol: Protocol) -> list[str]:
        """The vetted addresses to dial for an endpoint (checked again at connect time,
        so a name that now resolves elsewhere is refused: DNS rebinding).

        Only ``protocol``'s own default endpoint (host, port and security all equal) is
        exempt from the check: the SMTP default's port is no IMAP server to trust.
        """
        default = self.default(protocol)
        same = (endpoint.host.lower().rstrip("."), endpoint.port, endpoint.security) == (
            default.host.lower().rstrip("."),
            default.port,
            default.security,
        )
        if same:
            return self.resolve(endpoint.host)
        return check_host(endpoint.host, self.allow, self.resolve)

    def check(self, endpoint: Endpoint, protocol: Protocol) -> None:
        """Raise BlockedHostError unless the endpoint may be dialled for ``protocol``.

        The operator's own default endpoint of that protocol is trusted as configured;
        anything else must resolve to public or allow-listed addresses.
        """
        self.addresses(endpoint, protocol)
