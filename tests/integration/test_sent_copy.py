"""The Sent copy in the real Dovecot: a copy the server filed itself is found rather than
doubled, also by a reused session that, for a message it has just sent, searches only the
messages added to Sent since it last looked (and keeps Sent selected between sends)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from email_service.services.imap_pool import imap_pool
from email_service.services.outgoing import sent_copy
from email_service.store.models import Account, Outbox, utcnow
from email_service.store.states import SentCopyState
from tests.conftest import TENANT_A
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login, quote

pytestmark = pytest.mark.dovecot


def _sent(n: int) -> tuple[Outbox, bytes]:
    """A message as sent (the row's Message-ID and date, and its bytes)."""
    message_id = f"<sent-copy-{n}-{uuid.uuid4().hex}@example.test>"
    row = Outbox(id=uuid.uuid4(), message_id=message_id, sent_at=utcnow(), origin_flag=None)
    data = (
        f"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: copy {n}\r\n"
        f"Message-ID: {message_id}\r\n\r\nbody {n}\r\n"
    ).encode()
    return row, data


def _in_sent(dovecot: Any, user: Any, folder: str, message_id: str) -> list[bytes]:
    with imap_login(dovecot, user) as client:
        client.select(quote(folder), readonly=True)
        _typ, data = client.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
        return list(data[0].split())


def test_a_copy_the_server_filed_is_found_by_a_reused_session_that_searches_only_new_mail(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    with runtime.db.session() as session:
        login = sent_copy.imap_login(session, runtime, session.get_one(Account, account_id))

    first, first_data = _sent(1)  # a fresh session: EXAMINE and a search of all of Sent
    copy = sent_copy.store_sent_copy(runtime, first, first_data, login, None, just_sent=True)
    assert copy.state == SentCopyState.APPENDED and copy.uid is not None
    pool = imap_pool(runtime)
    ((_login, pooled),) = [(k, p) for k, p in pool._idle if k == login]
    folder = pooled.folder("sent")
    assert folder is not None and pooled.imap.selected == folder
    assert pooled.sent_next is not None and pooled.sent_next[1] == copy.uid + 1

    # The server files its own copy of the next message on submission (as Gmail does).
    second, second_data = _sent(2)
    with imap_login(dovecot, mail_user) as client:
        filed = append(client, folder, second_data, "\\Seen")
    copy = sent_copy.store_sent_copy(runtime, second, second_data, login, None, just_sent=True)
    assert pooled.reused  # the same session: NOOP, then a search of the new messages only
    assert (copy.state, copy.uid) == (SentCopyState.SERVER_COPY, filed)
    assert _in_sent(dovecot, mail_user, folder, second.message_id) == [str(filed).encode()]

    third, third_data = _sent(3)  # nothing filed: appended once, after the one above
    copy = sent_copy.store_sent_copy(runtime, third, third_data, login, None, just_sent=True)
    assert copy.state == SentCopyState.APPENDED and copy.uid is not None and copy.uid > filed
    assert pooled.sent_next[1] == copy.uid + 1

    # A later run for a message sent before (beat, reconciliation) searches all of Sent.
    again = sent_copy.store_sent_copy(runtime, first, first_data, login, None)
    assert again.state == SentCopyState.SERVER_COPY
    for row in (first, second, third):
        assert len(_in_sent(dovecot, mail_user, folder, row.message_id)) == 1
