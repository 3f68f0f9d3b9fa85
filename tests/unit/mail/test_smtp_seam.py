"""The SMTP client against a scripted aiosmtpd server: what reaches the wire, and what
each failure is classified as (before or after the final "." of DATA)."""

from __future__ import annotations

import datetime as dt
import email
import socket
from email import policy

import pytest

from email_service.errors import (
    HeaderInjectionError,
    RemotePermanentError,
    RemoteTemporaryError,
)
from email_service.mail.mime.build import Mailbox, Outgoing, build_message, envelope_recipients
from email_service.mail.smtp import SmtpAmbiguousError, SmtpSession, SmtpTarget
from email_service.mail.smtp_pool import SmtpPool
from tests.support.smtp_seam import Seam, smtp_seam

SENDER = "alice@example.test"
# Generous: the seam answers at once; this only bounds a broken test.
TIMEOUT = 10.0


def target(seam: Seam, **changes: object) -> SmtpTarget:
    values: dict[str, object] = {
        "host": "localhost",
        "port": seam.port,
        "security": "none",
        "username": SENDER,
        "password": "unused",
        "timeout": TIMEOUT,
        "connect_address": seam.host,
    }
    values.update(changes)
    return SmtpTarget(**values)  # type: ignore[arg-type]


def message(**changes: object) -> tuple[Outgoing, bytes]:
    values: dict[str, object] = {
        "sender": Mailbox(SENDER, "Alice"),
        "to": [Mailbox("bob@example.test", 'Bob "Bcc: x@y" Builder')],
        "cc": [Mailbox("carol@example.test", "Carol, the Second")],
        "bcc": [Mailbox("dave@example.test")],
        "subject": "Subject: not a header\tBcc: still not",
        "message_id": "<m@example.test>",
        "date": dt.datetime(2026, 11, 21, tzinfo=dt.UTC),
        "text": ".leading dot\n..two dots\nBcc: in the body\n",
    }
    values.update(changes)
    out = Outgoing(**values)  # type: ignore[arg-type]
    return out, build_message(out)


def send(seam: Seam, data: bytes, recipients: list[str], **kwargs: object) -> object:
    session = SmtpSession(target(seam))
    try:
        return session.send_message(SENDER, recipients, data, **kwargs)  # type: ignore[arg-type]
    finally:
        session.close()


def test_exactly_our_headers_and_recipients_reach_the_server() -> None:
    out, data = message()
    with smtp_seam() as seam:
        reply = send(seam, data, envelope_recipients(out))
    assert reply.code == 250  # type: ignore[attr-defined]
    assert len(seam.delivered) == 1
    got = seam.delivered[0]
    assert got.rcpt_tos == ["bob@example.test", "carol@example.test", "dave@example.test"]
    assert seam.rcpts == got.rcpt_tos  # no extra RCPT was ever attempted
    head = got.content.split(b"\r\n\r\n", 1)[0].decode()
    names = [ln.split(":", 1)[0].lower() for ln in head.split("\r\n") if ln[:1] not in " \t"]
    assert sorted(names) == sorted(
        ["from", "to", "cc", "subject", "date", "message-id", "mime-version",
         "content-type", "content-transfer-encoding"]
    )  # fmt: skip
    parsed = email.message_from_bytes(got.content, policy=policy.default)
    assert parsed["Subject"] == "Subject: not a header\tBcc: still not"
    lines = parsed.get_content().splitlines()
    assert lines[:2] == [".leading dot", "..two dots"]  # dot-stuffing undone by the server


@pytest.mark.parametrize(
    "recipient",
    [
        "bob@example.test\r\nRCPT TO:<evil@evil.test>",
        "bob@example.test\nRCPT TO:<evil@evil.test>",
        "bob@example.test\rX",
        "bob@example.test\x00",
        "bob@example.test> NOTIFY=NEVER",
        "<bob@example.test>",
    ],
)
def test_envelope_injection_is_refused_before_anything_is_sent(recipient: str) -> None:
    _out, data = message()
    with smtp_seam() as seam, pytest.raises(HeaderInjectionError):
        send(seam, data, [recipient])
    assert seam.rcpts == [] and seam.delivered == []


def test_451_is_temporary_and_keeps_the_answer() -> None:
    out, data = message()
    seam_451 = smtp_seam(script=["451 4.3.0 try again later"])
    with seam_451 as seam, pytest.raises(RemoteTemporaryError) as caught:
        send(seam, data, envelope_recipients(out))
    assert caught.value.details["smtp_code"] == 451
    assert caught.value.details["smtp_reply"] == "4.3.0 try again later"
    assert seam.delivered == []


def test_550_is_permanent_and_keeps_the_answer() -> None:
    out, data = message()
    seam_550 = smtp_seam(script=["550 5.7.1 relaying denied"])
    with seam_550 as seam, pytest.raises(RemotePermanentError) as caught:
        send(seam, data, envelope_recipients(out))
    assert caught.value.details["smtp_code"] == 550
    assert "relaying denied" in caught.value.message


def test_no_reply_after_the_final_dot_is_ambiguous_not_temporary() -> None:
    out, data = message()
    with smtp_seam(script=["drop"]) as seam, pytest.raises(SmtpAmbiguousError) as caught:
        send(seam, data, envelope_recipients(out))
    assert not isinstance(caught.value, RemoteTemporaryError)
    assert len(seam.delivered) == 1  # the server did take it


def test_a_failing_fence_drops_the_connection_before_the_final_dot() -> None:
    out, data = message()

    def fence() -> None:
        raise RuntimeError("lease lost")

    with smtp_seam() as seam, pytest.raises(RuntimeError, match="lease lost"):
        send(seam, data, envelope_recipients(out), before_final_dot=fence)
    assert seam.data_ends == 0 and seam.delivered == []


def test_the_fence_runs_once_before_the_end_of_data() -> None:
    out, data = message()
    seen: list[int] = []
    with smtp_seam() as seam:
        send(
            seam,
            data,
            envelope_recipients(out),
            before_final_dot=lambda: seen.append(seam.data_ends),
        )
    assert seen == [0]  # called while the server still waited for the "."
    assert len(seam.delivered) == 1


def test_the_pool_reuses_one_connection_and_replaces_a_dead_one() -> None:
    out, data = message()
    opened: list[SmtpSession] = []

    def connect(t: SmtpTarget) -> SmtpSession:
        opened.append(SmtpSession(t))
        return opened[-1]

    pool = SmtpPool(2, connect=connect)
    with smtp_seam() as seam:
        for _ in range(3):
            pool.send(target(seam), SENDER, envelope_recipients(out), data)
        assert len(opened) == 1
        opened[0]._smtp.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]  # gone
        pool.send(target(seam), SENDER, envelope_recipients(out), data)
        assert len(opened) == 2
    pool.close()
    assert len(seam.delivered) == 4


def test_refused_connection_is_temporary() -> None:
    with smtp_seam() as seam:
        port = seam.port
    with pytest.raises(RemoteTemporaryError):
        SmtpSession(target(Seam(port=port)))


def test_starttls_is_required_when_asked_for() -> None:
    with smtp_seam() as seam, pytest.raises(RemotePermanentError, match="STARTTLS"):
        SmtpSession(target(seam, security="starttls"))


def test_a_server_that_takes_long_is_bounded_by_the_timeout() -> None:
    out, data = message()
    with smtp_seam(hold_rcpts=1) as seam:
        session = SmtpSession(target(seam, timeout=0.3))
        with pytest.raises(RemoteTemporaryError, match="RCPT"):
            session.send_message(SENDER, envelope_recipients(out), data)
    assert seam.delivered == []
