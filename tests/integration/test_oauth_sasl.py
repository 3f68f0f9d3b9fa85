"""OAUTHBEARER and XOAUTH2 logins, verified by the real Dovecot (oauth2 passdb, token
introspection against the test authorization server) and Postfix (SMTP AUTH through Dovecot).
"""

from __future__ import annotations

import secrets
import time

import pytest

from email_service.errors import RemoteAuthError
from email_service.mail import sasl
from email_service.mail.imap import login as imap_login
from email_service.mail.imap.conn import ImapConnection, open_socket
from email_service.mail.imap.session import ImapSession
from email_service.mail.sasl import BearerToken
from email_service.mail.smtp import SmtpSession, SmtpTarget
from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.postfix import PostfixServer

pytestmark = [pytest.mark.dovecot]
TIMEOUT = 15.0
CLIENT_ID = "sasl-tests"


@pytest.fixture(scope="module")
def client_id(oauth_provider: OAuthProvider) -> str:
    oauth_provider.add_client(CLIENT_ID, secrets.token_urlsafe(12), ["http://127.0.0.1/cb"])
    return CLIENT_ID


def _imap(dovecot: DovecotServer, user: str, token: BearerToken) -> ImapSession:
    return ImapSession(
        dovecot.host,
        dovecot.imap_port,
        "starttls",
        user,
        token,
        timeout=TIMEOUT,
        ca_file=str(dovecot.ca_file),
    )


def test_imap_logs_in_with_a_bearer_token(
    dovecot: DovecotServer, mail_user: MailAccount, oauth_provider: OAuthProvider, client_id: str
) -> None:
    token = oauth_provider.issue(mail_user.email, client_id)
    with _imap(dovecot, mail_user.email, BearerToken(token.access_token)) as imap:
        assert "INBOX" in {f.name for f in imap.list_folders()}
    assert "method=OAUTHBEARER" in dovecot.log_file.read_text()


def test_imap_xoauth2_when_oauthbearer_is_not_offered(
    dovecot: DovecotServer, mail_user: MailAccount, oauth_provider: OAuthProvider, client_id: str
) -> None:
    token = BearerToken(oauth_provider.issue(mail_user.email, client_id).access_token)
    sock = open_socket(
        dovecot.host,
        dovecot.imap_port,
        implicit_tls=False,
        timeout=TIMEOUT,
        connect_address=None,
        ca_file=None,
    )
    conn = ImapConnection(sock, host=dovecot.host)
    try:
        preauth = imap_login.greet(conn)
        imap_login.starttls(conn, dovecot.host, str(dovecot.ca_file), preauth)
        conn.capabilities = conn.capabilities - {"AUTH=OAUTHBEARER"}
        sasl.imap_authenticate(conn, mail_user.email, token, dovecot.imap_port)
        assert conn.execute([b"SELECT", b"INBOX"]).kind == "OK"
    finally:
        conn.close()
    log = dovecot.log_file.read_text()
    assert f"user=<{mail_user.email}>, method=XOAUTH2" in log


def test_imap_refused_token_gives_the_servers_reason_without_the_token(
    dovecot: DovecotServer, mail_user: MailAccount, oauth_provider: OAuthProvider, client_id: str
) -> None:
    token = oauth_provider.issue(mail_user.email, client_id)
    oauth_provider.revoke_user(mail_user.email)
    with pytest.raises(RemoteAuthError) as caught:
        _imap(dovecot, mail_user.email, BearerToken(token.access_token))
    reason = caught.value.details["reason"]
    assert reason.startswith("token refused")
    assert "status=" in reason  # decoded from the base64 JSON challenge
    assert token.access_token not in str(caught.value) + repr(caught.value.details)


def test_a_token_for_another_user_is_refused(
    dovecot: DovecotServer, mail_user: MailAccount, oauth_provider: OAuthProvider, client_id: str
) -> None:
    other = dovecot.add_user(f"other-{secrets.token_hex(4)}@example.test", "pw-unused-1")
    token = oauth_provider.issue(other.email, client_id)
    with pytest.raises(RemoteAuthError):
        _imap(dovecot, mail_user.email, BearerToken(token.access_token))


def test_passwords_keep_working_beside_tokens(
    dovecot: DovecotServer, mail_user: MailAccount
) -> None:
    with ImapSession(
        dovecot.host,
        dovecot.imap_port,
        "starttls",
        mail_user.email,
        mail_user.password,
        timeout=TIMEOUT,
        ca_file=str(dovecot.ca_file),
    ) as imap:
        assert imap.list_folders()


def _target(postfix: PostfixServer, user: str, secret: str | BearerToken) -> SmtpTarget:
    return SmtpTarget(
        postfix.host,
        postfix.submission_port,
        "starttls",
        user,
        secret,
        timeout=TIMEOUT,
        ca_file=str(postfix.ca_file),
    )


@pytest.mark.postfix
def test_smtp_sends_with_a_bearer_token(
    postfix: PostfixServer,
    dovecot: DovecotServer,
    mail_user: MailAccount,
    oauth_provider: OAuthProvider,
    client_id: str,
) -> None:
    token = BearerToken(oauth_provider.issue(mail_user.email, client_id).access_token)
    subject = f"oauth-{secrets.token_hex(4)}"
    data = f"From: {mail_user.email}\r\nTo: {mail_user.email}\r\nSubject: {subject}\r\n\r\nhi\r\n"
    session = SmtpSession(_target(postfix, mail_user.email, token))
    try:
        assert session.send_message(mail_user.email, [mail_user.email], data.encode()).code == 250
    finally:
        session.close()
    assert _delivered(dovecot, mail_user.email, subject)


@pytest.mark.postfix
def test_smtp_refused_token_is_an_auth_error_with_reason(
    postfix: PostfixServer, mail_user: MailAccount, oauth_provider: OAuthProvider, client_id: str
) -> None:
    token = oauth_provider.issue(mail_user.email, client_id)
    oauth_provider.revoke_user(mail_user.email)
    with pytest.raises(RemoteAuthError) as caught:
        SmtpSession(_target(postfix, mail_user.email, BearerToken(token.access_token)))
    assert caught.value.details["smtp_code"] == 535
    assert token.access_token not in str(caught.value) + repr(caught.value.details)


def _delivered(dovecot: DovecotServer, email: str, subject: str) -> bool:
    maildir = dovecot.maildir(email)
    for _ in range(100):  # delivery is asynchronous; poll the Maildir, no timing asserted
        for path in (maildir / "new").glob("*") if (maildir / "new").exists() else []:
            if subject in path.read_text(errors="replace"):
                return True
        time.sleep(0.1)
    return False


def test_error_reason_parses_the_json_challenge() -> None:
    assert sasl.error_reason(b'{"status":"invalid_token","scope":"mail"}') == (
        "token refused: status=invalid_token, scope=mail"
    )
    assert sasl.error_reason(b"not json") == "token refused"
    assert "secret" not in repr(BearerToken("secret")) + str(BearerToken("secret"))
