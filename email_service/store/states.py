"""The states rows move through, as enums: stored as their string values, compared as such."""

from __future__ import annotations

from enum import StrEnum


class OutboxState(StrEnum):
    """An outbox row's delivery state (services/outgoing/delivery.py draws the machine)."""

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    NEEDS_RECONCILIATION = "needs_reconciliation"
    SENT = "sent"
    BOUNCED = "bounced"  # sent, then every recipient reported failed (a DSN, RFC 3464)
    FAILED = "failed"
    CANCELLED = "cancelled"


# States in which a row still moves on its own (or waits for a person, reconciliation).
ACTIVE_OUTBOX_STATES = (
    OutboxState.QUEUED,
    OutboxState.SENDING,
    OutboxState.RETRYING,
    OutboxState.NEEDS_RECONCILIATION,
)
# Not SENDING: its SMTP transaction may be under way and cannot be called back.
CANCELLABLE_OUTBOX_STATES = (
    OutboxState.QUEUED,
    OutboxState.RETRYING,
    OutboxState.NEEDS_RECONCILIATION,
)
# A claim takes a row in one of these states (a due first attempt or a retry).
CLAIMABLE_OUTBOX_STATES = (OutboxState.QUEUED, OutboxState.RETRYING)


class SentCopyState(StrEnum):
    """Where the Sent copy of a delivered message stands."""

    PENDING = "pending"
    APPENDED = "appended"
    SERVER_COPY = "server_copy"
    NO_FOLDER = "no_folder"
    FAILED = "failed"


class DraftState(StrEnum):
    """A draft is edited until a send request freezes it into the outbox."""

    EDITING = "editing"
    QUEUED = "queued"


class SyncRunState(StrEnum):
    """An account's sync state (services/sync/state.py: queued, running, then an outcome)."""

    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    AUTH_FAILED = "auth_failed"


class AccountStatus(StrEnum):
    """Whether an account is synced: disabled by its owner, or waiting for new credentials."""

    ACTIVE = "active"
    DISABLED = "disabled"
    AUTH_FAILED = "auth_failed"


class AuthKind(StrEnum):
    """How an account logs in to its servers (docs/oauth2.md)."""

    PASSWORD = "password"  # noqa: S105 - a kind of login, not a secret
    OAUTH2 = "oauth2"
