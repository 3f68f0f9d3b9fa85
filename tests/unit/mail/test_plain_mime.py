"""The plain message written directly (mail/mime/plain.py) is byte for byte the email
package's, and is what the common message takes."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_service.errors import EmailServiceError
from email_service.mail.mime import build
from email_service.mail.mime.build import Mailbox, Outgoing, build_message, package_message
from tests.unit.mail.mime_samples import outgoing

# Characters that exercise every rule of plain.py: atext, specials, spaces, quotes, encoded
# word markers, non-ASCII, line ends and other controls.
NAME_CHARS = "aZ9 .,\"'()<>@:;=?_-é\\\t"
TEXT_CHARS = "ab Z9=.\t\r\n\x0b\x0cé€\x85-"
LOCALS = ["bob", "b.o", "o'neil", "x+tag", "a_b-c"]
DOMAINS = ["example.test", "ex-ample.org", "bücher.test"]


SIMPLE_NAMES = ["", "Bob", "Bob Dylan", "x_y O'Neil"]
SUBJECTS = ["Hello", "Re: a b", "x" * 69, "x" * 70]


def _mailboxes(names: st.SearchStrategy[str]) -> st.SearchStrategy[Mailbox]:
    address = st.builds(
        lambda local, domain: f"{local}@{domain}", st.sampled_from(LOCALS), st.sampled_from(DOMAINS)
    )
    return st.builds(Mailbox, address, names)


# Lines of every length around the 78-character fold and 998-character limits.
lines = st.one_of(
    st.sampled_from(["", "Hi Bob", "a = b", "\t indented", "trailing ", "Grüße"]),
    st.text(TEXT_CHARS, max_size=20),
    st.integers(70, 90).map(lambda n: "w" * n),
    st.integers(990, 1030).map(lambda n: "l" * n),
)
texts = st.lists(lines, max_size=6).map("\n".join) | st.lists(lines, max_size=3).map("".join)


def _messages(names: st.SearchStrategy[str], subjects: st.SearchStrategy[str]) -> Any:
    boxes = _mailboxes(names)
    return st.builds(
        outgoing,
        sender=boxes,
        to=st.lists(boxes, min_size=1, max_size=4),
        cc=st.lists(boxes, max_size=2),
        bcc=st.lists(boxes, max_size=2),
        subject=subjects,
        text=texts,
        in_reply_to=st.sampled_from([None, "<p@x.test>"]),
        references=st.lists(
            st.sampled_from(["<r1@x.test>", "<r2.long.id@example.test>"]), max_size=4
        ),
        draft=st.booleans(),
    )


# Mostly messages of simple fields (the direct path's, unless a line is too long), and
# messages of any fields.
messages = _messages(st.sampled_from(SIMPLE_NAMES), st.sampled_from(SUBJECTS)) | _messages(
    st.text(NAME_CHARS, max_size=30), st.text("ab Z9=?:é\t", max_size=90)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_plain_messages_are_the_email_packages_bytes(out: Outgoing) -> None:
    try:
        built = build_message(out)
    except EmailServiceError:  # refused inputs are refused on both paths
        return
    assert built == package_message(out)


def test_the_common_message_is_written_directly() -> None:
    plain = build._plain(outgoing(text="x" * 1023 + "\n"))  # one long line: quoted-printable
    assert plain is not None
    assert plain == package_message(outgoing(text="x" * 1023 + "\n"))
    assert build._plain(outgoing(to=[Mailbox("bob@example.test", "Bob Dylan")])) is not None


def test_other_messages_go_to_the_email_package() -> None:
    assert build._plain(outgoing(html="<p>Hi</p>")) is None
    assert build._plain(outgoing(to=[Mailbox("bob@example.test", "Bob B. Dylan")])) is None
    assert build._plain(outgoing(subject="Grüße")) is None
    assert build._plain(outgoing(subject="word " * 20)) is None  # folded over 78
