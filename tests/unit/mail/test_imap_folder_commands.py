"""Folder commands against a scripted server: CREATE with RFC 6154 §3 USE, which the
project's Dovecot does not offer (the fallback: tests/integration/test_folders_api.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from email_service.errors import HeaderInjectionError
from email_service.mail.imap.codec import encode_folder_name
from email_service.mail.imap.session import ImapSession
from tests.unit.mail.imap_fake import PASSWORD, USER, FakeServer, Peer, Script, fake_server

__all__ = ["fake_server"]  # the fixture, imported to be found

Start = Callable[[Script | None], FakeServer]
TIMEOUT = 5.0


def _commands(server: FakeServer) -> list[bytes]:
    assert server.peer is not None
    return [line.split(b" ", 1)[1] for line in server.peer.lines[1:] if b" " in line]


def _ok_all(peer: Peer) -> None:
    while True:
        tag, rest = peer.command()
        if rest.upper() == b"LOGOUT":
            peer.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            return
        peer.send(tag + b" OK done\r\n")


@pytest.mark.parametrize(
    ("caps", "sent", "applied"),
    [
        ("IMAP4rev1 CREATE-SPECIAL-USE", b'CREATE "Old mail" (USE (\\Archive))', True),
        ("IMAP4rev1 SPECIAL-USE", b'CREATE "Old mail"', False),
    ],
)
def test_create_with_a_role(fake_server: Start, caps: str, sent: bytes, applied: bool) -> None:
    def script(peer: Peer) -> None:
        peer.login(caps=caps)
        _ok_all(peer)

    server = fake_server(script)
    with ImapSession("127.0.0.1", server.port, "none", USER, PASSWORD, timeout=TIMEOUT) as imap:
        assert imap.create_folder("Old mail", "archive") is applied
        assert imap.create_folder("Plain") is False
    server.close()
    assert _commands(server)[:2] == [sent, b'CREATE "Plain"']


def test_rename_subscribe_delete_close_commands(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        _ok_all(peer)

    server = fake_server(script)
    raw = encode_folder_name("Büro/Ablage")
    with ImapSession("127.0.0.1", server.port, "none", USER, PASSWORD, timeout=TIMEOUT) as imap:
        imap.rename_folder("Work", raw)
        imap.subscribe(raw)
        imap.subscribe(raw, subscribed=False)
        imap.close_folder()
        imap.delete_folder(raw)
        with pytest.raises(HeaderInjectionError):
            imap.rename_folder("Work", "a\r\nb")
    server.close()
    assert _commands(server)[:5] == [
        b'RENAME "Work" "B&APw-ro/Ablage"',
        b'SUBSCRIBE "B&APw-ro/Ablage"',
        b'UNSUBSCRIBE "B&APw-ro/Ablage"',
        b"CLOSE",
        b'DELETE "B&APw-ro/Ablage"',
    ]
