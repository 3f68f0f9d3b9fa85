"""What every process builds once from its settings: database, vault, mail host policy."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from email_service.config import Settings
from email_service.files import open_to_others, private_dir
from email_service.security.crypto import Vault
from email_service.services.hosts import MailHostPolicy
from email_service.services.lifecycle.blob_spaces import open_space
from email_service.services.queue import JobQueue
from email_service.services.revocation import Denylist, denylist
from email_service.store.blobs import BlobSpace
from email_service.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Long-lived collaborators shared by requests and tasks of one process."""

    settings: Settings
    db: Database
    vault: Vault
    hosts: MailHostPolicy
    blobs: BlobSpace  # raw MIME and uploads, one namespace per tenant
    queue: JobQueue | None = field(default=None)  # wired by the app or worker
    revoked: Denylist | None = field(default=None)  # revoked token ids (api/auth)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Create the collaborators (settings must already carry the secrets)."""
        if not private_dir(settings.data_dir) and open_to_others(settings.data_dir):
            log.warning("DATA_DIR %s is open to other users; chmod 700 it", settings.data_dir)
        db = Database(settings.sqlalchemy_url)
        return cls(
            settings=settings,
            db=db,
            vault=Vault(settings.encryption_key, salt=settings.encryption_salt_bytes),
            hosts=MailHostPolicy.from_settings(settings),
            blobs=open_space(settings),
            revoked=denylist(settings, db),
        )
