"""sanitize_html against known webmail XSS vectors, newsletters, images; html_to_text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.mail.mime.html import MAX_HTML_DEPTH, SanitizedHtml, html_to_text, sanitize_html
from email_service.mail.mime.html_policy import ALLOWED_ATTRIBUTES, ALLOWED_TAGS

CID_URLS = {"logo@x": "/api/messages/7/attachments/3", "remote@x": "https://cdn.example/l.png"}
SET_ATTRIBUTES = {"a": {"target", "rel"}, "img": {"referrerpolicy"}}
BLOCKED_ATTRIBUTES = {"img": {"data-remote-src", "data-remote-srcset"}}
URL_ATTRIBUTES = {"href", "src", "data-remote-src"}
SAFE_SCHEMES = {"http", "https", "mailto", "tel"}
LOCAL_URLS = {url for url in CID_URLS.values() if url.startswith("/")}
SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")
STRICT_TAG = re.compile(r'</?[a-z][a-z0-9]*(?: [a-z-]+="[^"<>]*")*>')
UNSAFE_STYLE = re.compile(r"url\(|expression|script|behavior|binding|@import|\\", re.IGNORECASE)

XSS_VECTORS = [
    "<script>alert(1)</script>",
    '"><script>alert(1)</script>',
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)>",
    "<img/src=x/onerror=alert(1)>",
    '<img src="https://ok.example/a.png" alt="" onerror="alert(1)">',
    '<img src="javascript:alert(1)">',
    '<img src="http://ok.example/a.png" lowsrc="javascript:alert(1)" dynsrc="javascript:alert(1)">',
    '<img src="http://ok.example/x.png" srcset="javascript:alert(1) 1x">',
    '<img srcset="http://ok.example/a.png 1x, javascript:alert(1) 2x">',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<img src="data:image/png;base64,iVBORw0KGgo=">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    '<a href="jav\tascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#0000106avascript:alert(1)">x</a>',
    '<a href="&#x6A;avascript:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="\x01javascript:alert(1)">x</a>',
    '<a href="java\x00script:alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="/relative/into/the/client">x</a>',
    '<a href="//evil.example/x">x</a>',
    '<a href="cid:unknown@x">x</a>',
    '<a href="http://ok.example" onclick="alert(1)" id="x" name="y" class="z">x</a>',
    '<a href="https://ok.example" ping="https://tracker.example">x</a>',
    '<a href="https://ok.example" target="_self" rel="opener">x</a>',
    "<svg><script>alert(1)</script></svg>",
    "<svg/onload=alert(1)>",
    '<svg><use href="data:image/svg+xml,&lt;svg id=x&gt;&lt;script&gt;alert(1)&lt;/script&gt;'
    '#x"/></svg>',
    '<svg><use xlink:href="https://evil.example/x.svg#a"/></svg>',
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">XSS</text></a></svg>',
    '<svg><set attributeName="href" to="javascript:alert(1)"/></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<math href="javascript:alert(1)">CLICKME</math>',
    '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">x</maction></math>',
    '<style>@import "http://evil.example/x.css";</style><p>text</p>',
    '<style>body{background:url("javascript:alert(1)")}</style>',
    "<style><style/><img src=x onerror=alert(1)>",
    '<div style="background-image:url(javascript:alert(1))">x</div>',
    '<div style="background:url(https://tracker.example/p.gif)">x</div>',
    '<div style="background:u\\72l(https://tracker.example/)">x</div>',
    '<div style="color:red;/*x*/background:url(https://tracker.example/)">x</div>',
    '<div style="width:expression(alert(1))">x</div>',
    "<p style=\"font-family:'a';color:expression(alert(1))\">x</p>",
    '<div style="behavior:url(x.htc)">x</div>',
    '<div style="-moz-binding:url(https://evil.example/x.xml#xss)">x</div>',
    '<div style="list-style-image:url(https://t.example/)">x</div>',
    '<div style="position:fixed;top:0;left:0;width:100%;z-index:9999">overlay</div>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="https://evil.example/">',
    '<link rel=stylesheet href="https://evil.example/x.css">',
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    '<form><button formaction="javascript:alert(1)">x</button></form>',
    '<input type="image" src="x" onerror="alert(1)">',
    "<isindex type=image src=1 onerror=alert(1)>",
    "<keygen autofocus onfocus=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<title><img src=x onerror=alert(1)></title>",
    "<textarea><img src=x onerror=alert(1)></textarea>",
    "<noembed><img src=x onerror=alert(1)></noembed>",
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<template><script>alert(1)</script></template>",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<!-- --!><img src=x onerror=alert(1)> -->",
    "<body onload=alert(1)>",
    "<frameset onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<marquee onstart=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    "<div/onclick=alert(1)>x</div>",
    '<table><tr><td background="javascript:alert(1)">x</td></tr></table>',
    '<table background="https://tracker.example/bg.png"><tr><td>x</td></tr></table>',
]


class Elements(HTMLParser):
    """Every start tag with its attributes, and anything that is not an element or text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.other: list[str] = []
        self.events: list[object] = []  # the whole tree, attribute order ignored

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))
        self.events.append((tag, sorted(attrs, key=str)))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(f"/{tag}")

    def handle_data(self, data: str) -> None:
        self.events.append(data)

    def handle_comment(self, data: str) -> None:
        self.other.append(f"comment {data}")

    def handle_decl(self, decl: str) -> None:
        self.other.append(f"declaration {decl}")

    def handle_pi(self, data: str) -> None:
        self.other.append(f"processing instruction {data}")


def parse(html: str) -> Elements:
    """The elements of an HTML fragment, as the standard library's parser sees them."""
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def assert_safe(html: str) -> None:
    """Parse the output and check element, attribute, URL and CSS allow-lists."""
    parser = parse(html)
    assert parser.other == []
    # Every "<" starts a plainly serialized tag whose attribute values hold no markup
    # characters, so the output cannot change shape when a client embeds it (mXSS).
    for opening in re.finditer("<", html):
        assert STRICT_TAG.match(html, opening.start()), html[opening.start() :][:80]
    for tag, attrs in parser.elements:
        assert tag in ALLOWED_TAGS, tag
        allowed = (
            ALLOWED_ATTRIBUTES["*"]
            | ALLOWED_ATTRIBUTES.get(tag, frozenset())
            | SET_ATTRIBUTES.get(tag, set())
            | BLOCKED_ATTRIBUTES.get(tag, set())
        )
        for name, value in attrs:
            assert name in allowed, (tag, name)
            assert_safe_value(name, value or "")


def assert_safe_value(name: str, value: str) -> None:
    """A URL attribute has a safe scheme or is one of our local URLs; CSS loads nothing."""
    if name in URL_ATTRIBUTES:
        scheme = SCHEME.match(value)
        assert (scheme and scheme.group(1).lower() in SAFE_SCHEMES) or value in LOCAL_URLS, value
    if name.endswith("srcset"):
        assert all(c.strip().startswith(("http://", "https://")) for c in value.split(","))
    if name == "style":
        assert not UNSAFE_STYLE.search(value), value
    if name in URL_ATTRIBUTES or name.endswith("srcset") or name == "style":
        compact = re.sub(r"\s", "", value).lower()
        assert "javascript:" not in compact and "alert(" not in compact, value


@pytest.mark.parametrize("vector", XSS_VECTORS)
@pytest.mark.parametrize("block", [True, False], ids=["blocked", "shown"])
def test_xss_vectors_leave_nothing_executable(vector: str, block: bool) -> None:
    result = sanitize_html(vector, cid_urls=CID_URLS, block_remote_images=block)
    assert_safe(result.html)
    assert "<script" not in result.html.lower()


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_sanitizing_is_stable(vector: str) -> None:
    """Sanitized output parses to the same tree again: no mutation on the second parse (mXSS)."""
    once = sanitize_html(vector, cid_urls=CID_URLS, block_remote_images=False).html
    twice = sanitize_html(once, cid_urls=CID_URLS, block_remote_images=False).html
    assert parse(twice).events == parse(once).events


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ("<script>alert(1)</script>safe", "safe"),
        ("<style>p{color:red}</style><p>text</p>", "<p>text</p>"),
        ("<svg><text>hidden</text></svg>visible", "visible"),
        ("<img src=x onerror=alert(1)>", '<img referrerpolicy="no-referrer">'),
        (
            '<a href="javascript:alert(1)" onclick="x()">x</a>',
            '<a target="_blank" rel="noopener noreferrer nofollow">x</a>',
        ),
        (
            '<div style="color:red;position:fixed;WIDTH:10px">x</div>',
            '<div style="color:red;width:10px">x</div>',
        ),
        ('<div style="color:red;background:url(x)">x</div>', '<div style="color:red">x</div>'),
        ('<form action="/x"><input name="q">Search</form>', "Search"),
        # parsed as with scripting off: the image is markup, and loses its handler
        (
            '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
            '<img referrerpolicy="no-referrer">"&gt;',
        ),
    ],
)
def test_exact_outputs(vector: str, expected: str) -> None:
    assert sanitize_html(vector).html == expected


NEWSLETTER = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><style>.x{color:red}</style></head>'
    '<body style="margin:0"><center><table role="presentation" width="600" cellpadding="0" '
    'cellspacing="0" border="0" bgcolor="#f4f4f4" align="center" class="wrap">'
    '<tr><td align="left" valign="top" style="padding:8px 24px;background-color:#ffffff;'
    'font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:20px;color:#333333">'
    '<font color="#ff0000" face="Arial">Sale</font> <b>now</b>'
    '<a href="https://shop.example/?a=1&amp;b=2" style="text-decoration:none">Shop</a>'
    "</td></tr></table></center></body></html>"
)


def test_newsletter_keeps_its_layout() -> None:
    assert sanitize_html(NEWSLETTER).html == (
        '<center><table width="600" cellpadding="0" cellspacing="0" border="0" '
        'bgcolor="#f4f4f4" align="center"><tbody><tr><td align="left" valign="top" '
        'style="padding:8px 24px;background-color:#ffffff;'
        "font-family:Arial , Helvetica , sans-serif;font-size:14px;line-height:20px;"
        'color:#333333"><font color="#ff0000" face="Arial">Sale</font> <b>now</b>'
        '<a href="https://shop.example/?a=1&amp;b=2" style="text-decoration:none" '
        'target="_blank" rel="noopener noreferrer nofollow">Shop</a></td></tr></tbody>'
        "</table></center>"
    )


IMAGES = (
    '<img src="https://t.example/open.gif" width="1" height="1" alt="">'
    '<img src="HTTP://cdn.example/a.png?x=1&amp;y=2" alt="a">'
    '<img srcset="https://cdn.example/1.png 1x, https://cdn.example/2.png 2x">'
    '<img src="cid:logo@x" alt="logo">'
    '<img src="cid:remote@x">'
    '<img src="cid:unknown@x" alt="gone">'
)


def test_remote_images_blocked_and_counted() -> None:
    result = sanitize_html(IMAGES, cid_urls=CID_URLS)
    assert result == SanitizedHtml(
        html=(
            '<img data-remote-src="https://t.example/open.gif" width="1" height="1" alt="" '
            'referrerpolicy="no-referrer">'
            '<img data-remote-src="HTTP://cdn.example/a.png?x=1&amp;y=2" alt="a" '
            'referrerpolicy="no-referrer">'
            '<img data-remote-srcset="https://cdn.example/1.png 1x, https://cdn.example/2.png 2x" '
            'referrerpolicy="no-referrer">'
            '<img src="/api/messages/7/attachments/3" alt="logo" referrerpolicy="no-referrer">'
            '<img data-remote-src="https://cdn.example/l.png" referrerpolicy="no-referrer">'
            '<img referrerpolicy="no-referrer" alt="gone">'
        ),
        remote_images_blocked=4,
        remote_images=4,
    )


def test_remote_images_shown_on_request() -> None:
    result = sanitize_html(IMAGES, cid_urls=CID_URLS, block_remote_images=False)
    assert (result.remote_images, result.remote_images_blocked) == (4, 0)
    assert '<img src="https://t.example/open.gif"' in result.html
    assert "data-remote" not in result.html


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "//evil.example/x", "/\\evil.example", "data:image/png,x", ""]
)
def test_cid_urls_must_be_http_or_local_paths(url: str) -> None:
    result = sanitize_html('<img src="cid:a@x"><a href="cid:a@x">a</a>', cid_urls={"a@x": url})
    assert "src=" not in result.html and "href=" not in result.html


def test_cid_with_url_escapes_and_links_to_attachments() -> None:
    result = sanitize_html(
        '<img src="cid:logo%40x"><a href="cid:logo@x">download</a>', cid_urls=CID_URLS
    )
    assert result.html.count('"/api/messages/7/attachments/3"') == 2


def test_links_open_outside_and_mailto_is_kept() -> None:
    html = sanitize_html('<a href="mailto:a@example.org">mail</a>').html
    assert html == (
        '<a href="mailto:a@example.org" target="_blank" rel="noopener noreferrer nofollow">mail</a>'
    )


@pytest.mark.parametrize("tag", ["div", "blockquote", "ul", "span"])
def test_deep_nesting_is_cut_where_it_gets_hostile(tag: str) -> None:
    result = sanitize_html("<p>intro</p>" + f"<{tag}>" * 50_000 + "lost")
    assert result.html.startswith("<p>intro</p>")
    assert result.html.count(f"<{tag}>") == MAX_HTML_DEPTH
    assert "lost" not in result.html
    assert_safe(result.html)


def test_nesting_count_ignores_mismatched_closers_and_keeps_real_mail() -> None:
    mismatched = sanitize_html("<div></span>" * 10_000).html
    assert mismatched.count("<div>") == MAX_HTML_DEPTH
    flat = "<div><p>a<li>b<br></div>" * 10_000  # wide, not deep: nothing cut
    assert sanitize_html(flat).html.count("<div>") == 10_000


def test_control_characters_are_dropped() -> None:
    assert sanitize_html("a\x00b\x0bc\x1fd").html == "abcd"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                *XSS_VECTORS,
                "<",
                ">",
                '"',
                "'",
                "=",
                "<a ",
                "<img ",
                " href=",
                " src=",
                "cid:x",
                "</",
            ]
        )
        | st.text(max_size=10),
        max_size=8,
    )
)
def test_random_markup_stays_safe(pieces: list[str]) -> None:
    result = sanitize_html("".join(pieces), cid_urls=CID_URLS)
    assert_safe(result.html)
    assert 0 <= result.remote_images_blocked <= result.remote_images


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello <b>World</b></p><p>Second</p>", "Hello World\n\nSecond"),
        ("<ul><li>one</li><li>two</li></ul>", "  * one\n  * two"),
        (
            "<table><tr><th>Name</th><th>Qty</th></tr><tr><td>Apple</td><td>3</td></tr></table>",
            "Name   Qty\nApple  3",
        ),
        ("<style>p{color:red}</style><script>alert(1)</script><p>only this</p>", "only this"),
        ("Caf&eacute; &amp; bar", "Café & bar"),
        ("line<br>break", "line\nbreak"),
        ('<a href="https://x.example">link text</a>', "link text"),
        ("", ""),
        ("  \n ", ""),
        ("\x00<p>nul</p>", "nul"),
        ("<", "<"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_html_to_text_never_raises(html: str) -> None:
    assert isinstance(html_to_text(html), str)
