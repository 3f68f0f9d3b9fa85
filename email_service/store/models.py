"""SQLAlchemy 2 models. Every row belongs to a tenant; every query filters by it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from email_service.store.search.index import SearchText

# Stable constraint names so Alembic migrations are the same on PostgreSQL and SQLite.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store in UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    """A registered IMAP/SMTP mailbox. The password is stored only encrypted."""

    __tablename__ = "email_account"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(200))
    username: Mapped[str] = mapped_column(String(320))
    password_ciphertext: Mapped[str | None] = mapped_column(Text)  # None for OAuth2 accounts
    password_scheme: Mapped[str | None] = mapped_column(String(16))  # "fernet"
    password_key_id: Mapped[str | None] = mapped_column(String(16))  # which key made it
    auth_kind: Mapped[str] = mapped_column(String(16), default="password")  # AuthKind
    oauth_provider: Mapped[str | None] = mapped_column(String(64))  # configured provider name
    # access token, its expiry and the refresh token: one Fernet ciphertext (JSON inside)
    oauth_ciphertext: Mapped[str | None] = mapped_column(Text)
    oauth_key_id: Mapped[str | None] = mapped_column(String(16))
    oauth_refresh_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # refresh lease
    auth_error: Mapped[str | None] = mapped_column(Text)  # why the server refused, last time
    imap_host: Mapped[str] = mapped_column(String(253))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(8))
    smtp_host: Mapped[str] = mapped_column(String(253))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_security: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # An edit of what the account logs in with or where (password, tokens given, username,
    # IMAP server); a token refresh leaves it alone. Push restarts the connection on it.
    login_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("tenant_id", "email", name="uq_email_account_tenant_email"),
        Index("idx_email_account_tenant", "tenant_id"),
    )


class OAuthState(Base):
    """A pending OAuth2 authorization request: single use, short-lived, tenant-bound."""

    __tablename__ = "oauth_state"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of state
    tenant_id: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))  # the API token's `sub` that asked
    provider: Mapped[str] = mapped_column(String(64))
    verifier_ciphertext: Mapped[str] = mapped_column(Text)  # PKCE code_verifier, encrypted
    nonce: Mapped[str] = mapped_column(String(64))  # OIDC nonce the id_token must carry
    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # re-authorizing this one
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("idx_oauth_state_expires", "expires_at"),)


# JSON on both backends; JSONB on PostgreSQL for compact storage and containment queries.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Folder(Base):
    """An IMAP mailbox of an account, with the server state the last sync saw."""

    __tablename__ = "mail_folder"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_account.id", ondelete="CASCADE")
    )
    raw_name: Mapped[str] = mapped_column(Text)  # exactly as the server sends it (mUTF-7)
    name: Mapped[str] = mapped_column(Text)  # decoded for people
    delimiter: Mapped[str | None] = mapped_column(String(4))
    role: Mapped[str | None] = mapped_column(String(16))  # inbox, sent, drafts, trash, ...
    attributes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    selectable: Mapped[bool] = mapped_column(Boolean, default=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uidnext: Mapped[int | None] = mapped_column(BigInteger)  # checkpoint: all below are stored
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("account_id", "raw_name", name="uq_mail_folder_account_raw_name"),
        Index("idx_mail_folder_tenant_account", "tenant_id", "account_id"),
    )


class Message(Base):
    """One message in one folder (a message in two folders is two rows, one thread)."""

    __tablename__ = "email_message"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_account.id", ondelete="CASCADE")
    )
    folder_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mail_folder.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(Text)  # the Message-ID header
    thread_id: Mapped[str | None] = mapped_column(String(64))
    subject_key: Mapped[str] = mapped_column(Text, default="")  # normalized, for threading
    subject_orphan: Mapped[bool] = mapped_column(Boolean, default=False)  # no References
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(JSONType, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_name: Mapped[str | None] = mapped_column(Text)
    from_email: Mapped[str | None] = mapped_column(Text)
    to_addrs: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    cc_addrs: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    bcc_addrs: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    reply_to: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # Date header
    received_date: Mapped[datetime] = mapped_column(UTCDateTime)  # IMAP INTERNALDATE
    size: Mapped[int] = mapped_column(Integer, default=0)
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    seen: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    answered: Mapped[bool] = mapped_column(Boolean, default=False)
    draft: Mapped[bool] = mapped_column(Boolean, default=False)
    has_attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    snippet: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)  # as sent; sanitized when served
    # full-text tokens, filled by the application (store.search_index.search_document)
    search_text: Mapped[str] = mapped_column(SearchText, default="", deferred=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    blob_sha256: Mapped[str] = mapped_column(String(64))  # raw MIME in the blob store
    parse_error: Mapped[str | None] = mapped_column(Text)  # set: stored raw, not parsed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("folder_id", "uidvalidity", "uid", name="uq_email_message_folder_uid"),
        Index("idx_email_message_account", "account_id"),
        Index("idx_email_message_received", received_date.desc()),
        Index("idx_email_message_list", "tenant_id", "folder_id", received_date.desc(), id.desc()),
        Index("idx_email_message_message_id", "account_id", "message_id"),
        Index("idx_email_message_thread", "account_id", "thread_id"),
        Index("idx_email_message_subject_key", "account_id", "subject_key"),
        # Unread and flagged mail, newest first (migration 0006): the views a client opens
        # most, and without these a mailbox with little unread mail is read end to end.
        # The predicates are the literal forms the queries compile to on each backend.
        Index(
            "idx_email_message_unread",
            "tenant_id",
            received_date.desc(),
            id.desc(),
            postgresql_where=text("NOT seen"),
            sqlite_where=text("seen = 0"),
        ),
        Index(
            "idx_email_message_folder_unread",
            "tenant_id",
            "folder_id",
            received_date.desc(),
            id.desc(),
            postgresql_where=text("NOT seen"),
            sqlite_where=text("seen = 0"),
        ),
        Index(
            "idx_email_message_flagged",
            "tenant_id",
            received_date.desc(),
            id.desc(),
            postgresql_where=text("flagged"),
            sqlite_where=text("flagged = 1"),
        ),
    )


# What a message list shows (``services.messages.summary_view``) and a search hit carries:
# read as columns, not as Message objects, so a page never loads bodies, headers or the
# other address lists it does not show.
SUMMARY_COLUMNS: tuple[Any, ...] = (
    Message.id,
    Message.account_id,
    Message.folder_id,
    Message.thread_id,
    Message.subject,
    Message.from_name,
    Message.from_email,
    Message.to_addrs,
    Message.received_date,
    Message.sent_at,
    Message.flags,
    Message.seen,
    Message.flagged,
    Message.answered,
    Message.has_attachments,
    Message.snippet,
    Message.size,
)


class Attachment(Base):
    """Metadata of one attachment; its bytes are extracted from the raw MIME on demand."""

    __tablename__ = "attachment"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_message.id", ondelete="CASCADE")
    )
    part_index: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    content_id: Mapped[str | None] = mapped_column(Text)
    is_inline: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("idx_attachment_message", "message_id"),)


class SyncState(Base):
    """Sync bookkeeping of one account: state, lock with expiry, progress, last error."""

    __tablename__ = "account_sync"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_account.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="idle")
    job_id: Mapped[str | None] = mapped_column(String(64))
    lock_owner: Mapped[str | None] = mapped_column(String(64))
    lock_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    messages_synced: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_synced: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("idx_account_sync_tenant", "tenant_id"),)


class ThreadLink(Base):
    """An id a stored message links by (its own Message-ID or one it references).

    Referenced-but-unseen ids are kept too, so a parent arriving later finds its children.
    """

    __tablename__ = "thread_link"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_account.id", ondelete="CASCADE")
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_message.id", ondelete="CASCADE")
    )
    link_id: Mapped[str] = mapped_column(Text)
    thread_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("idx_thread_link_lookup", "account_id", "link_id"),
        Index("idx_thread_link_thread", "account_id", "thread_id"),
        Index("idx_thread_link_message", "message_id"),
    )


class Draft(Base):
    """A message being written; frozen into an :class:`Outbox` row when queued for sending."""

    __tablename__ = "draft"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_account.id", ondelete="CASCADE")
    )
    to_addrs: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    cc_addrs: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    bcc_addrs: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    # The message replied to / forwarded (email_message.id; no FK: a resync may replace it)
    in_reply_to_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    forward_of_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    forward_mode: Mapped[str | None] = mapped_column(String(16))  # attachment | inline
    # Snapshot of the original taken when the draft was made (RFC 5322 §3.6.4)
    reply_message_id: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(JSONType, default=list)
    forward_blob_sha256: Mapped[str | None] = mapped_column(String(64))
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outbox_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # set while a send is active
    imap_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)  # copy in Drafts
    imap_uid: Mapped[int | None] = mapped_column(BigInteger)
    imap_saved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its updated_at
    # Set, and committed, before the first APPEND to Drafts; never cleared: false means no
    # copy of any version can be on a server, so a send need not look for one.
    imap_copy_started: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("idx_draft_tenant_updated", "tenant_id", "updated_at", "id"),)


class ComposeAttachment(Base):
    """An uploaded file (bytes in the blob store), attached to at most one draft."""

    __tablename__ = "compose_attachment"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    draft_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("draft.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    blob_sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str | None] = mapped_column(Text)  # for cid: references in the HTML
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("idx_compose_attachment_tenant", "tenant_id"),
        Index("idx_compose_attachment_draft", "draft_id"),
    )


class Outbox(Base):
    """One request to send a draft: the frozen MIME and its delivery state machine
    (``services/outbox.py`` draws it)."""

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("email_account.id", ondelete="CASCADE")
    )
    # No FK: a sent draft is deleted. A message sent as the client built it (POST /api/send
    # with message/rfc822) had no draft: its draft_id is the row's own id.
    draft_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    state: Mapped[str] = mapped_column(String(24), default="queued")
    stage: Mapped[str | None] = mapped_column(String(16))  # while sending: connecting | data_end
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    message_id: Mapped[str] = mapped_column(Text)  # the Message-ID header sent
    subject: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSONType, default=list)  # envelope
    mime_blob_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_smtp_code: Mapped[int | None] = mapped_column(Integer)
    last_smtp_reply: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    reconcile_checks: Mapped[int] = mapped_column(Integer, default=0)
    # The original to flag once sent: \Answered (reply) or $Forwarded (forward)
    origin_message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    origin_flag: Mapped[str | None] = mapped_column(String(16))
    # Copy in the Sent folder: pending | appended | server_copy | no_folder | failed
    sent_copy: Mapped[str | None] = mapped_column(String(16))
    sent_copy_uid: Mapped[int | None] = mapped_column(BigInteger)
    # Failed or delayed recipients from bounces (services/sync/bounces.py): one object per
    # recipient and action with recipient, action, status, diagnostic, reported_at.
    bounces: Mapped[list[dict[str, str | None]]] = mapped_column(JSONType, default=list)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def without_draft(self) -> bool:
        """True for a message sent as the client built it: no draft, no Drafts copy."""
        return self.draft_id == self.id

    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_outbox_tenant_idempotency_key"),
        Index("idx_outbox_tenant_created", "tenant_id", "created_at", "id"),
        Index("idx_outbox_tenant_draft", "tenant_id", "draft_id"),
        Index("idx_outbox_state_due", "state", "next_attempt_at"),
        # A bounce without our envelope id finds its send by the original's Message-ID.
        Index("idx_outbox_tenant_message_id", "tenant_id", "message_id"),
    )


class Change(Base):
    """One created/updated/destroyed object, written in the transaction that changed it.

    ``seq`` is the deployment's monotonic sequence; within a tenant rows commit in ``seq``
    order (``store/change_log.py`` takes a per-tenant lock at commit), which is what makes
    a tenant's highest ``seq`` a state string's safe position.
    """

    __tablename__ = "change_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # no FK: outlives the account
    type: Mapped[str] = mapped_column(String(16))  # message, folder, draft, outbox, account, sync
    entity_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(16))  # created, updated, destroyed
    detail: Mapped[str | None] = mapped_column(String(32))  # e.g. failed, sent, auth_failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("idx_change_log_tenant_seq", "tenant_id", "seq"),
        Index("idx_change_log_created", "created_at"),
        {"sqlite_autoincrement": True},  # a pruned top sequence is never handed out again
    )


class ChangeHorizon(Base):
    """The one row saying up to which sequence the change log may have been pruned."""

    __tablename__ = "change_log_horizon"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    pruned_through: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookEndpoint(Base):
    """A tenant's webhook: where to POST which events, signed with its secret."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("email_account.id", ondelete="CASCADE")
    )
    secret_ciphertext: Mapped[str] = mapped_column(Text)  # whsec_..., sealed by the Vault
    secret_key_id: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="enabled")  # enabled | disabled
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    cursor_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # change log read up to
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("idx_webhook_endpoint_tenant", "tenant_id", "created_at", "id"),)


class WebhookDelivery(Base):
    """One event for one endpoint; ``id`` is its stable ``webhook-id`` across attempts."""

    __tablename__ = "webhook_delivery"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE")
    )
    change_seq: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("endpoint_id", "change_seq", name="uq_webhook_delivery_endpoint_seq"),
        Index("idx_webhook_delivery_list", "tenant_id", "endpoint_id", "created_at", "id"),
        Index("idx_webhook_delivery_due", "state", "next_attempt_at"),
    )


class Deletion(Base):
    """A deletion under way: written before anything goes, removed when its blobs are gone.

    ``kind`` is ``account`` (its rows are deleted in the same transaction; its blobs are
    collected once they are past the grace period) or ``tenant`` (a purge: rows table by
    table, then the tenant's blob namespace).
    """

    __tablename__ = "deletion"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # no FK: the account is gone
    kind: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("idx_deletion_tenant", "tenant_id"),)


class RevokedToken(Base):
    """A revoked API token's ``jti`` (``email-service token --revoke``), kept until every
    token that could carry it has expired. Not a tenant's row: a token spans tenants."""

    __tablename__ = "revoked_token"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
