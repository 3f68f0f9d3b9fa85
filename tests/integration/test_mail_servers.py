"""The test Dovecot and Postfix, started from deploy/, behave as the service relies on.

IMAP with the special-use folders and CONDSTORE/QRESYNC, TLS that verifies against the
test CA only, delivery from Postfix to Dovecot over LMTP, submission with STARTTLS +
AUTH against Dovecot's users, and no relaying.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import poplib
import re
import secrets
import smtplib
import ssl
from email.message import EmailMessage

import pytest

from tests.servers import DovecotServer, MailAccount, PostfixServer
from tests.servers.wait import wait_for

# Delivery through Postfix and LMTP takes milliseconds; this only bounds a failure.
DELIVERY_TIMEOUT = 10.0
SPECIAL_USE = {
    "Drafts": "\\Drafts",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
LIST_LINE = re.compile(rb'\((?P<attrs>[^)]*)\) "(?P<sep>[^"]*)" "?(?P<name>[^"]*)"?')
CLIENT_NAME = "client.example.test"


def ca_context(server: DovecotServer | PostfixServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))


def imap_login(dovecot: DovecotServer, user: MailAccount) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
    imap.login(user.email, user.password)
    return imap


def list_folders(imap: imaplib.IMAP4, command: str = "LIST") -> dict[str, set[str]]:
    typ, lines = imap._simple_command(command, '""', "*")
    assert typ == "OK"
    _, data = imap._untagged_response(typ, lines, command)
    folders = {}
    for line in data:
        assert isinstance(line, bytes), line
        match = LIST_LINE.match(line)
        assert match, line
        folders[match["name"].decode()] = set(match["attrs"].decode().split())
    return folders


def wait_for_inbox(dovecot: DovecotServer, user: MailAccount, count: int) -> list[bytes]:
    """Poll the INBOX until it holds ``count`` messages; return their raw bytes."""
    with imap_login(dovecot, user) as imap:

        def delivered() -> bool:
            typ, data = imap.select("INBOX", readonly=True)
            assert typ == "OK"
            return int(data[0] or b"0") >= count

        wait_for(delivered, f"{count} messages in INBOX", DELIVERY_TIMEOUT, interval=0.05)
        exists = int(imap.select("INBOX", readonly=True)[1][0] or b"0")
        assert exists == count, f"INBOX has {exists} messages, expected {count}"
        typ, fetched = imap.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        return [part[1] for part in fetched if isinstance(part, tuple)]


def make_message(sender: str, recipient: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


# ---- Dovecot -------------------------------------------------------------------------


@pytest.mark.dovecot
def test_imap_lists_special_use_folders_subscribed(dovecot, mail_user):
    with imap_login(dovecot, mail_user) as imap:
        folders = list_folders(imap)
        subscribed = list_folders(imap, "LSUB")

    assert set(folders) == {"INBOX", *SPECIAL_USE}
    for name, flag in SPECIAL_USE.items():
        assert flag in folders[name], (name, folders[name])
    assert not folders["INBOX"] & set(SPECIAL_USE.values())
    assert set(SPECIAL_USE) <= set(subscribed)


@pytest.mark.dovecot
def test_imap_advertises_and_enables_condstore_qresync(dovecot, mail_user):
    with imap_login(dovecot, mail_user) as imap:
        typ, caps = imap.capability()
        assert typ == "OK"
        capabilities = set(caps[0].decode().upper().split())
        assert {"CONDSTORE", "QRESYNC", "SPECIAL-USE", "UIDPLUS", "MOVE", "IDLE"} <= capabilities

        typ, data = imap._simple_command("ENABLE", "QRESYNC")
        assert typ == "OK"
        _, enabled = imap._untagged_response(typ, data, "ENABLED")
        assert b"QRESYNC" in (enabled[0] or b"").upper()

        imap.select("INBOX")
        _, modseq = imap.response("HIGHESTMODSEQ")
        assert modseq and int(modseq[0]) >= 1


@pytest.mark.dovecot
def test_imaps_verifies_against_test_ca_only(dovecot, mail_user):
    with imaplib.IMAP4_SSL(
        dovecot.host, dovecot.imaps_port, ssl_context=ca_context(dovecot), timeout=10
    ) as imap:
        typ, _ = imap.login(mail_user.email, mail_user.password)
        assert typ == "OK"
        assert imap.sock.version() in {"TLSv1.2", "TLSv1.3"}

    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            dovecot.host, dovecot.imaps_port, ssl_context=ssl.create_default_context(), timeout=10
        )


@pytest.mark.dovecot
def test_imap_starttls_verifies_against_test_ca_only(dovecot, mail_user):
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10) as imap:
        assert "STARTTLS" in imap.capabilities
        typ, _ = imap.starttls(ssl_context=ca_context(dovecot))
        assert typ == "OK"
        typ, _ = imap.login(mail_user.email, mail_user.password)
        assert typ == "OK"

    imap = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            imap.starttls(ssl_context=ssl.create_default_context())
    finally:
        with contextlib.suppress(OSError):
            imap.shutdown()


@pytest.mark.dovecot
def test_imap_rejects_wrong_password(dovecot, mail_user):
    with (
        imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10) as imap,
        pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"),
    ):
        imap.login(mail_user.email, mail_user.password + "x")


@pytest.mark.dovecot
def test_pop3_over_tls_sees_empty_maildrop(dovecot, mail_user):
    pop = poplib.POP3_SSL(dovecot.host, dovecot.pop3s_port, context=ca_context(dovecot))
    try:
        pop.user(mail_user.email)
        pop.pass_(mail_user.password)
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()


# ---- Postfix -> Dovecot --------------------------------------------------------------


@pytest.mark.postfix
def test_smtp_delivers_local_mail_to_inbox(postfix, dovecot, mail_user):
    token = secrets.token_hex(8)
    msg = make_message(
        "Zoë <zoe@elsewhere.test>", mail_user.email, f"Grüße {token}", f"Hallo ✓ {token}\n"
    )
    with smtplib.SMTP(postfix.host, postfix.smtp_port, CLIENT_NAME, timeout=10) as smtp:
        refused = smtp.send_message(msg)
    assert refused == {}

    [raw] = wait_for_inbox(dovecot, mail_user, 1)
    received = parse(raw)
    assert received["Subject"] == f"Grüße {token}"
    assert received.get_content().strip() == f"Hallo ✓ {token}"
    assert received["Delivered-To"] == mail_user.email
    maildir = dovecot.maildir(mail_user.email)
    assert len(list(maildir.glob("new/*")) + list(maildir.glob("cur/*"))) == 1
    assert postfix.queue_is_empty()


@pytest.mark.postfix
def test_smtp_port_refuses_relaying(postfix):
    with smtplib.SMTP(postfix.host, postfix.smtp_port, CLIENT_NAME, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.mail("someone@elsewhere.test")[0] == 250
        code, reply = smtp.rcpt("victim@example.com")
    assert code == 554
    assert b"Relay access denied" in reply


@pytest.mark.postfix
def test_submission_requires_starttls_then_auth(postfix, mail_user):
    with smtplib.SMTP(postfix.host, postfix.submission_port, CLIENT_NAME, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")
        code, reply = smtp.mail(mail_user.email)
        assert code == 530, reply

    with smtplib.SMTP(postfix.host, postfix.submission_port, CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=ca_context(postfix))
        smtp.ehlo()
        assert set(smtp.esmtp_features["auth"].split()) >= {"PLAIN", "LOGIN"}
        assert smtp.mail(mail_user.email)[0] == 250
        code, reply = smtp.rcpt(mail_user.email)
    assert code == 554
    assert b"Access denied" in reply


@pytest.mark.postfix
def test_submission_starttls_fails_against_default_trust_store(postfix):
    with (
        smtplib.SMTP(postfix.host, postfix.submission_port, CLIENT_NAME, timeout=10) as smtp,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        smtp.starttls(context=ssl.create_default_context())


@pytest.mark.postfix
def test_submission_authenticates_against_dovecot_users(postfix, dovecot, mail_user):
    with smtplib.SMTP(postfix.host, postfix.submission_port, CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=ca_context(postfix))
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            smtp.login(mail_user.email, mail_user.password + "x")
        assert wrong.value.smtp_code == 535

    token = secrets.token_hex(8)
    msg = make_message(mail_user.email, mail_user.email, f"note to self {token}", token)
    with smtplib.SMTP(postfix.host, postfix.submission_port, CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=ca_context(postfix))
        code, _ = smtp.login(mail_user.email, mail_user.password)
        assert code == 235
        assert smtp.send_message(msg) == {}
        # Authenticated, but still no relaying to foreign domains.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail(mail_user.email, ["someone@example.com"], msg.as_bytes())
        [(code, reply)] = refused.value.recipients.values()
        assert code == 554
        assert b"Relay access denied" in reply

    [raw] = wait_for_inbox(dovecot, mail_user, 1)
    assert parse(raw)["Subject"] == f"note to self {token}"
