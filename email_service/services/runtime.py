"""What every process builds once from its settings: database, vault, mail host policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from email_service.config import Settings
from email_service.security.crypto import Vault
from email_service.services.hosts import MailHostPolicy
from email_service.services.queue import JobQueue
from email_service.services.revocation import Denylist, denylist
from email_service.store.db import Database


@dataclass
class Runtime:
    """Long-lived collaborators shared by requests and tasks of one process."""

    settings: Settings
    db: Database
    vault: Vault
    hosts: MailHostPolicy
    queue: JobQueue | None = field(default=None)  # wired by the app or worker
    revoked: Denylist | None = field(default=None)  # revoked token ids (api/auth)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Create the collaborators (settings must already carry the secrets)."""
        db = Database(settings.sqlalchemy_url)
        return cls(
            settings=settings,
            db=db,
            vault=Vault(settings.encryption_key, salt=settings.encryption_salt_bytes),
            hosts=MailHostPolicy.from_settings(settings),
            revoked=denylist(settings, db),
        )
