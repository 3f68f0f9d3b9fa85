"""What mail HTML may keep: elements, attributes, URL schemes and CSS properties (allow-lists)."""

from __future__ import annotations

import re

# Text, sectioning and table elements: what mail (newsletters included) is built from.
# Everything else is unwrapped (its text kept) unless listed in CLEAN_CONTENT_TAGS.
ALLOWED_TAGS = frozenset(
    {
        *("a", "abbr", "acronym", "address", "b", "bdi", "bdo", "big", "blockquote", "br"),
        *("center", "cite", "code", "dd", "del", "dfn", "div", "dl", "dt", "em", "font"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark"),
        *("ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "small", "span", "strike"),
        *("strong", "sub", "sup", "tt", "u", "ul", "var", "wbr"),
        *("article", "aside", "details", "figcaption", "figure", "footer", "header"),
        *("hgroup", "main", "nav", "section", "summary"),
        *("caption", "col", "colgroup", "table", "tbody", "td", "tfoot", "th", "thead", "tr"),
    }
)
# Dropped with everything inside: code, styles, document metadata, foreign content (SVG and
# MathML change parsing rules, the root of most mXSS), embedded documents and form controls.
CLEAN_CONTENT_TAGS = frozenset(
    {
        *("script", "style", "title", "noscript", "template", "xmp", "noembed", "noframes"),
        *("svg", "math", "iframe", "frame", "frameset", "object", "embed", "applet"),
        *("textarea", "select", "option", "button", "datalist", "canvas", "audio", "video"),
    }
)
# Layout attributes newsletters rely on; no id/name/class, no event handlers, no background.
_CELL = frozenset({"width", "height", "align", "valign", "bgcolor", "colspan", "rowspan"})
_SECTION = frozenset({"align", "valign", "bgcolor"})
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"style", "title", "dir", "lang", "align"}),
    "a": frozenset({"href", "hreflang"}),
    "img": frozenset({"src", "srcset", "alt", "width", "height", "border", "hspace", "vspace"}),
    "table": frozenset(
        {"width", "height", "bgcolor", "border", "cellpadding", "cellspacing", "summary"}
        | {"frame", "rules"}
    ),
    "tr": _SECTION | {"height"},
    "td": _CELL | {"nowrap", "headers", "abbr"},
    "th": _CELL | {"nowrap", "headers", "abbr", "scope"},
    "thead": _SECTION,
    "tbody": _SECTION,
    "tfoot": _SECTION,
    "col": frozenset({"span", "width", "valign"}),
    "colgroup": frozenset({"span", "width", "valign"}),
    "font": frozenset({"color", "face", "size"}),
    "hr": frozenset({"size", "width", "noshade", "color"}),
    "ol": frozenset({"start", "type", "reversed"}),
    "ul": frozenset({"type"}),
    "li": frozenset({"value", "type"}),
    "details": frozenset({"open"}),
}
# Set on every such element whatever the message says: links open outside the client and
# neither they nor (once shown) images tell the remote site where they were opened from.
SET_ATTRIBUTES = {"a": {"target": "_blank"}, "img": {"referrerpolicy": "no-referrer"}}
LINK_REL = "noopener noreferrer nofollow"
# cid: is rewritten by our filter to an attachment URL or dropped; the rest are links.
URL_SCHEMES = frozenset({"http", "https", "mailto", "tel", "cid"})
# Colors, type, text, box model, borders, tables and lists; nothing that positions content
# over the client's UI (position, z-index, transform) or loads anything (background-image,
# list-style-image, border-image, content, cursor, behavior).
ALLOWED_CSS_PROPERTIES = frozenset(
    {
        *("color", "background", "background-color"),
        *("font", "font-family", "font-size", "font-style", "font-variant", "font-weight"),
        *("line-height", "letter-spacing", "word-spacing", "text-align", "text-indent"),
        *("text-decoration", "text-decoration-color", "text-decoration-line"),
        *("text-decoration-style", "text-transform", "white-space", "word-break"),
        *("word-wrap", "overflow-wrap", "direction", "vertical-align"),
        *("margin", "margin-top", "margin-right", "margin-bottom", "margin-left"),
        *("padding", "padding-top", "padding-right", "padding-bottom", "padding-left"),
        *("width", "height", "min-width", "max-width", "min-height", "max-height"),
        *("display", "float", "clear", "overflow", "box-sizing"),
        *("border", "border-top", "border-right", "border-bottom", "border-left"),
        *("border-color", "border-style", "border-width", "border-radius"),
        *("border-top-color", "border-right-color", "border-bottom-color", "border-left-color"),
        *("border-top-style", "border-right-style", "border-bottom-style", "border-left-style"),
        *("border-top-width", "border-right-width", "border-bottom-width", "border-left-width"),
        *("border-collapse", "border-spacing", "table-layout", "caption-side", "empty-cells"),
        *("list-style-type", "list-style-position"),
    }
)
# A CSS declaration containing any of these is dropped whole: escapes could spell anything,
# url()/image()/image-set()/src() load, expression()/behavior/-moz-binding run code (old
# engines), @import and markup characters do not belong in a style attribute.
UNSAFE_CSS = re.compile(
    r"\\|url\s*\(|image|expression|script|behavior|binding|@import|src\s*\(|element\s*\(|[<>&]",
    re.IGNORECASE,
)
