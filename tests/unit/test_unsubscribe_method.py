"""Which unsubscribe request a message allows: one-click when offered, else mailto."""

from __future__ import annotations

import pytest

from email_service.errors import ValidationError
from email_service.mail.mime.list_headers import ClientHeaders
from email_service.services.outgoing.unsubscribe import Method, choose

HTTPS = "https://news.example/u/1"
MAILTO = "mailto:leave@news.example"


def test_one_click_first_then_mailto() -> None:
    both = ClientHeaders([HTTPS], [MAILTO], one_click=True)
    assert choose(both, None) == (Method.ONE_CLICK, HTTPS)
    assert choose(both, Method.MAILTO) == (Method.MAILTO, MAILTO)
    no_post = ClientHeaders([HTTPS], [MAILTO], one_click=False)
    assert choose(no_post, None) == (Method.MAILTO, MAILTO)


def test_the_https_url_is_posted_to_not_an_http_one() -> None:
    mixed = ClientHeaders(["http://news.example/u", HTTPS], [], one_click=True)
    assert choose(mixed, None) == (Method.ONE_CLICK, HTTPS)


@pytest.mark.parametrize(
    ("parsed", "method"),
    [
        (ClientHeaders([HTTPS], [], one_click=False), None),  # a link for a browser only
        (ClientHeaders([], [MAILTO]), Method.ONE_CLICK),
        (ClientHeaders(), None),
    ],
)
def test_nothing_to_do_is_a_422(parsed: ClientHeaders, method: Method | None) -> None:
    with pytest.raises(ValidationError):
        choose(parsed, method)
