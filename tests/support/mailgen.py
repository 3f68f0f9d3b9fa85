"""Build test messages and put them on the real Dovecot with stdlib imaplib."""

from __future__ import annotations

import imaplib
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from tests.servers.dovecot import DovecotServer, MailAccount

SUBJECTS = ["Quarterly report", "Grüße aus München", "日本語の件名", "Re: lunch?", "Invoice 42"]


def make_message(
    i: int, *, attachment: bool = False, html: bool = False, size_kb: int = 0, seed: int = 0
) -> bytes:
    """A realistic message; ``i`` makes it unique."""
    rng = random.Random(seed * 100_003 + i)
    msg = EmailMessage()
    msg["From"] = f"Sender Ünï {i} <sender{i}@example.org>"
    msg["To"] = "Alice <alice@example.test>, bob@example.test"
    msg["Subject"] = f"{SUBJECTS[i % len(SUBJECTS)]} #{i}"
    msg["Date"] = format_datetime(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i))
    msg["Message-ID"] = make_msgid(idstring=f"m{i}-{seed}", domain="example.org")
    words = " ".join(
        rng.choice(["alpha", "beta", "gamma", "delta", "épsilon"])
        for _ in range(40 + size_kb * 150)
    )
    msg.set_content(f"Hello {i},\n\n{words}\n")
    if html:
        msg.add_alternative(
            f"<html><body><p>Hello <b>{i}</b></p><p>{words}</p></body></html>", subtype="html"
        )
    if attachment:
        payload = bytes(rng.getrandbits(8) for _ in range(2048 + i))
        msg.add_attachment(
            payload, maintype="application", subtype="pdf", filename=f"rapport-é-{i}.pdf"
        )
    return msg.as_bytes()


@contextmanager
def imap_login(server: DovecotServer, user: MailAccount) -> Iterator[imaplib.IMAP4]:
    """A logged-in stdlib client on the plain port."""
    client = imaplib.IMAP4(server.host, server.imap_port)
    client.login(user.email, user.password)
    try:
        yield client
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def quote(name: str) -> str:
    """A mailbox name as an IMAP quoted string (test names have no quotes/backslashes)."""
    return '"' + name + '"'


def append(client: imaplib.IMAP4, folder_raw: str, raw: bytes, flags: str = "") -> int:
    """APPEND one message; returns its UID (APPENDUID)."""
    typ, data = client.append(quote(folder_raw), f"({flags})" if flags else None, None, raw)
    assert typ == "OK", data
    found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
    assert found, data
    return int(found.group(1))


def status(client: imaplib.IMAP4, folder_raw: str) -> dict[str, int]:
    """STATUS MESSAGES UIDNEXT UIDVALIDITY UNSEEN as a dict."""
    typ, data = client.status(quote(folder_raw), "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    assert typ == "OK", data
    pairs = re.findall(rb"(MESSAGES|UIDNEXT|UIDVALIDITY|UNSEEN) (\d+)", data[0])
    return {k.decode(): int(v) for k, v in pairs}


def fetch_raw(client: imaplib.IMAP4, folder_raw: str, uid: int) -> bytes:
    """The server's exact bytes of one message."""
    client.select(quote(folder_raw), readonly=True)
    typ, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK" and data and isinstance(data[0], tuple), data
    return bytes(data[0][1])


def recreate_folder(
    client: imaplib.IMAP4, folder_raw: str, back: str = "1:*", park: str = "Tmp"
) -> None:
    """Delete and re-create a folder (a new UIDVALIDITY), its messages parked meanwhile.

    The messages ``back`` (a UID set of ``park``) return to the new folder; the rest stay
    in ``park``, which is left selected.
    """
    client.create(quote(park))
    client.select(quote(folder_raw))
    client.uid("MOVE", "1:*", quote(park))
    client.close()
    client.delete(quote(folder_raw))
    time.sleep(1.1)  # Dovecot's UIDVALIDITY is time-based
    client.create(quote(folder_raw))
    client.select(quote(park))
    client.uid("MOVE", back, quote(folder_raw))
