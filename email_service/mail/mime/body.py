"""Which parts of a message are its text and HTML body, and which are attachments.

Rules (RFC 2046 section 5.1):

- ``multipart/alternative``: parts are in increasing order of faithfulness, so the HTML is the
  last part that yields HTML and the text the last part that yields only plain text (else the
  last that yields any). Unchosen representations are neither body nor attachment; other
  parts (a ``text/calendar`` invitation) are attachments.
- ``multipart/related`` (RFC 2387): the body is that of the ``start`` part, else the first.
- ``multipart/mixed`` and any other multipart: the body parts are concatenated in order
  (Apple Mail puts images between text parts; lists append a plain footer). If any of them is
  HTML, plain-only ones join the HTML as pre-wrapped escaped text; the text is kept only if
  every one of them has text.
- A ``text/plain`` or ``text/html`` part is a body part unless its disposition is
  ``attachment`` or it has a file name (at the top of the message or as a related root, only
  the disposition counts).
- A forwarded ``message/rfc822`` is an attachment, never the body, unless the message has no
  body of its own: then the first forwarded message's body is used (forward-as-attachment).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from email_service.mail.mime.parts import MESSAGE_TYPES, Part

BODY_TYPES = frozenset({"text/plain", "text/html"})


@dataclass(slots=True)
class Bodies:
    """The parts making up the text, and the parts making up the HTML (flag: plain, to wrap)."""

    text: list[Part] = field(default_factory=list)
    html: list[tuple[Part, bool]] = field(default_factory=list)

    def parts(self) -> list[Part]:
        """Every part used."""
        return self.text + [part for part, _ in self.html]


def choose_bodies(root: Part) -> tuple[Bodies, set[int]]:
    """The body of a message and the indexes of parts that are not attachments."""
    used: set[int] = set()
    bodies = choose(root, used, lenient=True)
    if bodies is None:
        bodies = forwarded_body(root, used) or Bodies()
    used.update(part.index for part in bodies.parts())
    return bodies, used


def attachment_parts(root: Part, used: set[int]) -> list[Part]:
    """Leaf parts and forwarded messages that are not part of the body, in order."""
    out: list[Part] = []
    stack = [root]
    while stack:
        part = stack.pop()
        if part.is_multipart and part.children:
            stack.extend(reversed(part.children))
        elif part.index not in used:
            out.append(part)
    return out


def choose(part: Part, used: set[int], lenient: bool = False) -> Bodies | None:
    """The body found in this part, or None."""
    if part.is_multipart and part.children:
        subtype = part.ctype.removeprefix("multipart/")
        if subtype == "alternative":
            return alternative(part, used)
        if subtype == "related":
            return related(part, used)
        return mixed(part, used)
    if not is_body_part(part, lenient):
        return None
    if part.ctype == "text/html":
        return Bodies(html=[(part, False)])
    return Bodies(text=[part])


def is_body_part(part: Part, lenient: bool) -> bool:
    """Whether a leaf is displayable body text (a multipart whose parts were lost counts)."""
    if part.ctype not in BODY_TYPES and not part.is_multipart:
        return False
    if part.disposition() == "attachment":
        return False
    return lenient or part.filename() is None


def alternative(part: Part, used: set[int]) -> Bodies | None:
    """The richest HTML and the plainest text among the alternatives."""
    found = [bodies for child in part.children if (bodies := choose(child, used))]
    html = next((b.html for b in reversed(found) if b.html), [])
    text = next((b.text for b in reversed(found) if b.text and not b.html), None)
    if text is None:
        text = next((b.text for b in reversed(found) if b.text), [])
    chosen = Bodies(text=text, html=html)
    for bodies in found:
        used.update(p.index for p in bodies.parts())  # unchosen ones are no attachments
    return chosen if text or html else None


def related(part: Part, used: set[int]) -> Bodies | None:
    """The body of the root part of a multipart/related."""
    start = part.params.get("start", "").strip().strip("<>")
    root = next((c for c in part.children if start and c.content_id() == start), None)
    return choose(root or part.children[0], used, lenient=True)


def mixed(part: Part, used: set[int]) -> Bodies | None:
    """The body parts of a multipart/mixed, concatenated."""
    found = [bodies for child in part.children if (bodies := choose(child, used))]
    if not found:
        return None
    out = Bodies()
    if all(bodies.text for bodies in found):
        out.text = [p for bodies in found for p in bodies.text]
    if any(bodies.html for bodies in found):
        out.html = [h for b in found for h in (b.html or [(p, True) for p in b.text])]
    return out if out.text or out.html else None


def forwarded_body(root: Part, used: set[int]) -> Bodies | None:
    """The body of the first forwarded message, for a message with none of its own."""
    for part in root.walk():
        if part.ctype in MESSAGE_TYPES and part.children:
            bodies = choose(part.children[0], used, lenient=True)
            if bodies is not None:
                return bodies
    return None
