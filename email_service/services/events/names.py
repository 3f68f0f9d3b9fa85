"""Event names shared by the event stream and webhooks, derived from change-log rows.

``<type>.<created|updated|deleted>`` for plain changes; a row with a ``detail`` names a
happening instead: ``sync.failed``, ``sync.queued``, ``sync.started``, ``sync.progress``,
``account.auth_failed``, ``send.sent``, ``send.failed``, ``send.bounced``. Outbox rows are
announced as ``send.*``.
"""

from __future__ import annotations

from email_service.errors import ValidationError
from email_service.store.change_log import ChangeType, Op

# Prefix of a type in event names: an outbox item is a send to the people who receive it.
PREFIX = {t.value: t.value for t in ChangeType} | {ChangeType.OUTBOX.value: "send"}
VERB = {Op.CREATED.value: "created", Op.UPDATED.value: "updated", Op.DESTROYED.value: "deleted"}
# Details a writer may give, per type: each becomes an event ``<prefix>.<detail>``.
DETAILS = {
    ChangeType.SYNC.value: ("failed", "queued", "started", "progress"),
    ChangeType.ACCOUNT.value: ("auth_failed", "webhook_disabled"),
    ChangeType.OUTBOX.value: ("sent", "failed", "bounced"),
}
EVENT_TYPES: frozenset[str] = frozenset(
    {f"{PREFIX[t]}.{v}" for t in PREFIX for v in VERB.values()}
    | {f"{PREFIX[t]}.{d}" for t, details in DETAILS.items() for d in details}
)


def event_name(type_: str, op: str, detail: str | None) -> str:
    """The event a change-log row announces."""
    return f"{PREFIX.get(type_, type_)}.{detail or VERB.get(op, op)}"


def check_patterns(patterns: list[str]) -> list[str]:
    """Validate subscriptions: exact names, ``<prefix>.*`` or ``*``; deduplicated."""
    prefixes = set(PREFIX.values())
    for pattern in patterns:
        if pattern == "*" or pattern in EVENT_TYPES:
            continue
        if pattern.endswith(".*") and pattern[:-2] in prefixes:
            continue
        raise ValidationError(f"unknown event type {pattern!r}", field="event_types")
    return sorted(set(patterns))


def matches(patterns: list[str], name: str) -> bool:
    """True if ``name`` is subscribed to by one of ``patterns``."""
    prefix = name.split(".", 1)[0]
    return any(p in {"*", name, f"{prefix}.*"} for p in patterns)
