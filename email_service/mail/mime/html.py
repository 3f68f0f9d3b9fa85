"""HTML mail made safe to show in a webmail client, and HTML turned into readable text.

Policy (nh3, i.e. ammonia over the html5ever parser, then one pass of our own):

- Only the elements of ``html_policy.ALLOWED_TAGS`` and attributes of ``ALLOWED_ATTRIBUTES``
  survive; script, style, title, SVG, MathML, templates, frames, objects and form controls are
  dropped with their content. No ``id``/``name``/``class`` (no DOM clobbering of the page, no
  borrowing of the client's CSS). Comments go.
- URLs: ``http``, ``https``, ``mailto`` and ``tel`` for links; relative URLs are refused (they
  would point into the webmail itself). ``javascript:``, ``vbscript:`` and ``data:`` (images
  included: inline images come as ``cid:`` parts) are refused whatever their obfuscation,
  because the URL is parsed before its scheme is checked.
- Inline ``style``: only ``html_policy.ALLOWED_CSS_PROPERTIES``; a declaration with a
  backslash escape, ``url(``, ``image(``, ``expression(``, ``behavior``, ``binding`` or
  ``@import`` is dropped before nh3 parses the rest.
- Markup nested deeper than ``MAX_HTML_DEPTH`` elements is cut where it gets that deep.
- Links get ``target="_blank"`` and ``rel="noopener noreferrer nofollow"``; images get
  ``referrerpolicy="no-referrer"``.
- ``cid:`` images are rewritten through ``cid_urls`` (content id without brackets -> URL);
  unknown ids are dropped. Mapped URLs must be http(s) or an absolute path.
- Remote images: every ``<img>`` whose ``src`` or ``srcset`` is http(s) counts (tracking
  pixels included). When blocked, ``src`` becomes ``data-remote-src`` and ``srcset`` becomes
  ``data-remote-srcset``, URLs unchanged: a client shows images by copying them back, or by
  asking for the message again with blocking off. Remote URLs in other places (``background``
  attributes, CSS) are never kept, so nothing else loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import unescape
from urllib.parse import unquote

import nh3
from inscriptis import get_text
from inscriptis.model.config import ParserConfig

from email_service.mail.mime.html_policy import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_CSS_PROPERTIES,
    ALLOWED_TAGS,
    CLEAN_CONTENT_TAGS,
    LINK_REL,
    SET_ATTRIBUTES,
    UNSAFE_CSS,
    URL_SCHEMES,
)

# nh3's serializer escapes "<" and ">" inside attribute values and quotes every value with
# '"' (escaped inside), so these patterns see only real tags and whole attributes.
IMG_TAG = re.compile(r"<img\b([^>]*)>")
TAG_ATTRIBUTE = re.compile(r'([^\s="]+)="([^"]*)"')
CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.S)
REMOTE_URL = re.compile(r"https?://", re.IGNORECASE)
# Characters that cannot appear in a document an HTML parser accepts (controls but tab/LF/CR).
HTML_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The HTML parser looks for an element "in scope" by walking all open elements at every
# block tag, so nesting multiplies the cost (20,000 nested divs: one second). Real mail
# nests a few dozen levels (tables in tables); deeper hostile markup is cut where it starts.
MAX_HTML_DEPTH = 400
TAG_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)")
# Elements that never stay open around others: void ones, and those that the next sibling
# closes implicitly (HTML "optional end tags"); they are not counted as nesting.
NOT_NESTING = frozenset(
    {
        *("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"),
        *("source", "track", "wbr", "p", "li", "dd", "dt", "td", "th", "tr", "tbody"),
        *("thead", "tfoot", "option", "optgroup", "rp", "rt", "colgroup", "caption"),
    }
)
# Text layout of tables and lists for plain-text display (inscriptis' defaults, links hidden).
TEXT_CONFIG = ParserConfig(display_links=False, display_images=False)


@dataclass(frozen=True, slots=True)
class SanitizedHtml:
    """Safe HTML and the count of remote images found and blocked in it."""

    html: str
    remote_images_blocked: int
    remote_images: int


def sanitize_html(
    html: str, *, cid_urls: Mapping[str, str] | None = None, block_remote_images: bool = True
) -> SanitizedHtml:
    """Sanitize mail HTML for display; remote images blocked (and counted) by default."""
    cid_urls = cid_urls or {}
    local_urls = {url for url in cid_urls.values() if is_local_path(url)}
    cleaner = nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=attribute_filter(cid_urls),
        link_rel=LINK_REL,
        set_tag_attribute_values=SET_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        filter_style_properties=ALLOWED_CSS_PROPERTIES,
        # Relative URLs would point into the client; only our own attachment URLs may.
        url_relative=lambda url: url if url in local_urls else None,
    )
    safe = cleaner.clean(cut_deep_nesting(HTML_CONTROL.sub("", html)))
    counts = [0, 0]

    def rewrite(match: re.Match[str]) -> str:
        return rewrite_img(match, block_remote_images, counts)

    safe = IMG_TAG.sub(rewrite, safe)
    return SanitizedHtml(html=safe, remote_images_blocked=counts[1], remote_images=counts[0])


def cut_deep_nesting(html: str) -> str:
    """The HTML up to where its elements would nest deeper than MAX_HTML_DEPTH."""
    stack: list[str] = []
    for match in TAG_TOKEN.finditer(html):
        name = match.group(2).lower()
        if name in NOT_NESTING:
            continue
        if not match.group(1):
            stack.append(name)
            if len(stack) > MAX_HTML_DEPTH:
                return html[: match.start()]
        elif name in stack:
            del stack[len(stack) - 1 - stack[::-1].index(name) :]
    return html


def attribute_filter(cid_urls: Mapping[str, str]) -> Callable[[str, str, str], str | None]:
    """The per-attribute check nh3 calls after its own (its result is not checked again)."""

    def check(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return filter_css(value)
        if attribute == "srcset":
            return filter_srcset(value)
        if attribute in ("src", "href") and value[:4].lower() == "cid:":
            return mapped_cid(cid_urls, value[4:])
        if tag == "img" and attribute == "src" and not REMOTE_URL.match(value):
            return None  # mailto: or tel: images load nothing
        return value

    return check


def filter_css(value: str) -> str | None:
    """Inline CSS without declarations that could load, run or hide anything."""
    kept = []
    for declaration in CSS_COMMENT.sub("", value).split(";"):
        name, colon, rest = declaration.partition(":")
        if colon and not UNSAFE_CSS.search(declaration):
            kept.append(f"{name.strip().lower()}:{rest.strip()}")
    return ";".join(kept) or None


def filter_srcset(value: str) -> str | None:
    """A srcset whose every candidate is an http(s) URL, else nothing."""
    candidates = [c.strip() for c in value.split(",") if c.strip()]
    if not candidates or not all(REMOTE_URL.match(c) for c in candidates):
        return None
    return ", ".join(candidates)


def mapped_cid(cid_urls: Mapping[str, str], content_id: str) -> str | None:
    """The URL a `cid:` reference maps to (RFC 2392: the id is URL-encoded), or None."""
    url = cid_urls.get(content_id) or cid_urls.get(unquote_cid(content_id))
    if url is None:
        return None
    return url if REMOTE_URL.match(url) or is_local_path(url) else None


def is_local_path(url: str) -> bool:
    """Whether a URL is an absolute path on this host (not "//host", which is remote)."""
    return url.startswith("/") and not url.startswith(("//", "/\\"))


def unquote_cid(content_id: str) -> str:
    """The content id of a `cid:` URL with its %-escapes undone and brackets dropped."""
    return unquote(content_id).strip("<>")


def rewrite_img(match: re.Match[str], block: bool, counts: list[int]) -> str:
    """Count a remote image and, when blocking, move its URLs to data- attributes."""
    attributes = TAG_ATTRIBUTE.findall(match.group(1))
    names = {name for name, _ in attributes}
    src = next((unescape(v) for n, v in attributes if n == "src"), "")
    if not (REMOTE_URL.match(src) or "srcset" in names):
        return match.group(0)
    counts[0] += 1
    if not block:
        return match.group(0)
    counts[1] += 1
    renamed = {"src": "data-remote-src", "srcset": "data-remote-srcset"}
    body = "".join(f' {renamed.get(n, n)}="{v}"' for n, v in attributes)
    return f"<img{body}>"


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body (lists and tables laid out), for search and display."""
    cleaned = HTML_CONTROL.sub("", html)
    if not cleaned.strip():
        return ""
    text: str = get_text(cleaned, TEXT_CONFIG)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
