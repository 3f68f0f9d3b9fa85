"""Known webmail XSS vectors, delivered as real mail, rendered by headless Chromium.

Each vector is one message APPENDed to Dovecot and synced by the service; the test
fetches the sanitized HTML with ``GET /api/messages/{id}`` (remote images blocked, the
default) and shows every message in an iframe of a page served from loopback:

- ``sandboxed``: ``<iframe sandbox="allow-same-origin allow-popups">``, as a webmail shows
  mail (the parent may measure and read the frame, scripts may not run);
- ``unsandboxed``: a plain ``<iframe srcdoc>`` sharing the page's origin, so the sanitizer
  alone stands between the vector and the page;
- ``control``: a few raw, unsanitized vectors, unsandboxed: they must fire, or the
  detectors are blind.

A vector that runs calls ``top.hit(n)`` (written into the page's DOM, read back with
``--dump-dom``); a vector that loads anything hits a canary HTTP server on another port.
The page's own script hovers and focuses every element and clicks non-http links, so
handlers that need a user fire too.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.hardening import figures
from tests.hardening.stack import Service
from tests.support.mailgen import imap_login
from tests.unit.mail.test_html import XSS_VECTORS

TENANT = "xss-tenant"
# Simulated time Chromium lets the page run (timers, loads, focus events) before dumping.
VIRTUAL_TIME_MS = 5000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--virtual-time-budget={VIRTUAL_TIME_MS}",
    "--timeout=30000",  # a page that never settles is stopped and dumped anyway
]
# Hosts of the unit corpus, pointed at the canary server here.
CORPUS_HOSTS = re.compile(r"https?://(?:ok|evil|tracker|t|cdn)\.example")
# Vectors whose only aim is to load something from elsewhere ({remote} is the canary).
LOADING_VECTORS = [
    '<img src="{remote}/img.png">',
    '<img src="{remote}/a.png" srcset="{remote}/srcset.png 1x">',
    '<picture><source srcset="{remote}/pic.png"><img src="{remote}/pic2.png"></picture>',
    '<video poster="{remote}/poster.png" src="{remote}/v.mp4" autoplay></video>',
    '<audio src="{remote}/a.mp3" autoplay></audio>',
    '<input type="image" src="{remote}/input.png">',
    '<body background="{remote}/bg.png">',
    '<table background="{remote}/tbg.png"><tr><td>x</td></tr></table>',
    '<svg><image href="{remote}/svgimg.png"/></svg>',
    '<svg><image xlink:href="{remote}/svgimg2.png"/></svg>',
    '<object data="{remote}/obj"></object>',
    '<embed src="{remote}/embed">',
    '<iframe src="{remote}/frame"></iframe>',
    '<script src="{remote}/s.js"></script>',
    '<link rel="stylesheet" href="{remote}/l.css">',
    '<link rel="prefetch" href="{remote}/prefetch">',
    '<link rel="preload" as="image" href="{remote}/preload.png">',
    "<style>@import url({remote}/imp.css);</style>",
    "<style>@font-face{{font-family:x;src:url({remote}/font.woff)}}p{{font-family:x}}</style>"
    "<p>x</p>",
    '<div style="background:url({remote}/style-bg.png)">x</div>',
    '<div style="background-image:image-set(url({remote}/set.png) 1x)">x</div>',
    '<div style="background:url(&quot;{remote}/entity.png&quot;)">x</div>',
    '<meta http-equiv="refresh" content="0;url={remote}/refresh">',
    '<base href="{remote}/"><img src="relative.png">',
    '<a href="{remote}/link" ping="{remote}/ping">x</a>',
    '<math><mtext><table><mglyph><style><img src="{remote}/mxss.png">',
    '<noscript><p title="</noscript><img src={remote}/noscript.png>">',
    '<form action="{remote}/form"><input name="q" autofocus></form>',
    '<img src="data:image/svg+xml,&lt;svg xmlns=%22http://www.w3.org/2000/svg%22&gt;'
    '&lt;image href=%22{remote}/dataimg.png%22/&gt;&lt;/svg&gt;">',
    '<img src="cid:nothere@x" onerror="fetch(\'{remote}/js-fetch\')">',
]
# The page's own script: what a user would do to every element of every readable frame.
PAGE_SCRIPT = """
window.hit = (n) => { document.getElementById('hits').textContent += n + ' '; };
window.addEventListener('load', () => {
  for (const frame of document.querySelectorAll('iframe')) {
    let doc = null;
    try { doc = frame.contentDocument; } catch (e) {}
    if (!doc) continue;
    for (const el of doc.querySelectorAll('*')) {
      for (const type of ['mouseover', 'mouseenter', 'focus', 'animationstart']) {
        try { el.dispatchEvent(new Event(type)); } catch (e) {}
      }
      const href = (el.getAttribute('href') || el.getAttribute('xlink:href') || '').trim();
      if ((el.tagName === 'A' && href && !/^(https?|mailto|tel):/i.test(href))
          || el.tagName === 'SUMMARY' || el.tagName === 'BUTTON') {
        try { el.click(); } catch (e) {}
      }
    }
  }
  setTimeout(() => { document.getElementById('done').textContent = 'done'; }, 1000);
});
"""
# Raw vectors that fire in any browser without a user: the detectors' control.
CONTROL = [
    "<img src=x onerror=top.hit({n})>",
    "<svg/onload=top.hit({n})>",
    "<details open ontoggle=top.hit({n})>",
    '<img src="{remote}/control.png">',
    '<div style="background:url({remote}/control-bg.png)">x</div>',
]
FRAMES = {
    "sandboxed": '<iframe sandbox="allow-same-origin allow-popups" srcdoc="{doc}"></iframe>',
    "unsandboxed": '<iframe srcdoc="{doc}"></iframe>',
}


def chromium_missing() -> str | None:
    """Why Chromium cannot run here, or None."""
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install -y chromium)"
    return None


def vectors(remote: str) -> list[str]:
    """The unit corpus made live (alert -> top.hit, foreign hosts -> canary) plus loaders."""
    found = []
    for n, vector in enumerate(XSS_VECTORS):
        live = vector.replace("alert(1)", f"top.hit({n})").replace("msgbox(1)", f"top.hit({n})")
        found.append(CORPUS_HOSTS.sub(f"{remote}/v{n}", live))
    base = len(found)
    found += [v.format(remote=f"{remote}/v{base + i}") for i, v in enumerate(LOADING_VECTORS)]
    return found


class Recorder(BaseHTTPRequestHandler):
    """Serves the pages; records every other path asked for."""

    pages: dict[str, bytes] = {}
    seen: list[str] = []

    def do_GET(self) -> None:
        body = self.pages.get(self.path)
        if body is None:
            self.seen.append(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body or b"")

    do_POST = do_HEAD = do_GET  # noqa: N815 - the names http.server looks up

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_server(pages: dict[str, bytes]) -> Iterator[tuple[int, list[str]]]:
    """A recording HTTP server on loopback: (port, paths asked for that are not pages)."""
    handler = type("Handler", (Recorder,), {"pages": pages, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), handler.seen
    finally:
        server.shutdown()
        server.server_close()


def page(frames: list[str]) -> bytes:
    body = "\n".join(frames)
    return (
        f"<!doctype html><html><head><meta charset=utf-8><script>{PAGE_SCRIPT}</script></head>"
        f'<body><pre id="hits"></pre><pre id="done"></pre>{body}</body></html>'
    ).encode()


def render(url: str, profile: Path) -> tuple[list[str], bool]:
    """Load ``url`` in headless Chromium; the ids that called top.hit, and whether the page
    finished its own script."""
    result = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    hits = re.search(r'<pre id="hits">([^<]*)</pre>', result.stdout)
    done = re.search(r'<pre id="done">done</pre>', result.stdout) is not None
    assert hits is not None, (result.returncode, result.stderr[-2000:])
    return hits.group(1).split(), done


def message(n: int, vector: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Mallory <mallory@example.org>"
    mail["To"] = "victim@example.test"
    mail["Subject"] = f"xss {n}"
    mail["Message-ID"] = f"<xss{n}@vectors.example>"
    mail.set_content(f"vector {n}")
    mail.add_alternative(f"<html><body><p>vector {n}</p>{vector}</body></html>", subtype="html")
    return mail.as_bytes()


def test_xss_vectors_neither_run_nor_load_in_chromium(
    service: Service, dovecot: Any, fresh_user: Any, tmp_path: Path
) -> None:
    reason = chromium_missing()
    if reason:
        for name in ("script executions", "outbound requests"):
            figures.skip("html", f"XSS vectors in Chromium: {name}", reason)
    pages: dict[str, bytes] = {}
    with http_server(pages) as (page_port, page_seen), http_server({}) as (canary, canary_seen):
        live = vectors(f"http://127.0.0.1:{canary}")
        user = fresh_user("xss")
        with imap_login(dovecot, user) as client:
            for n, vector in enumerate(live):
                assert client.append("INBOX", None, None, message(n, vector))[0] == "OK"
        account = service.create_account(TENANT, user, dovecot.imap_port)
        assert service.sync(TENANT, account["id"])["state"] == "ok"
        sanitized: dict[int, str] = {}
        for item in service.messages(TENANT, account_id=account["id"]):
            shown = service.call("GET", f"/api/messages/{item['id']}", TENANT).json()
            sanitized[int(shown["subject"].split()[1])] = shown["html"] or ""
        assert sorted(sanitized) == list(range(len(live)))
        sources = {
            "sandboxed": [
                FRAMES["sandboxed"].format(doc=html.escape(sanitized[n])) for n in sanitized
            ],
            "unsandboxed": [
                FRAMES["unsandboxed"].format(doc=html.escape(sanitized[n])) for n in sanitized
            ],
            "control": [
                FRAMES["unsandboxed"].format(
                    doc=html.escape(v.format(n=900 + i, remote=f"http://127.0.0.1:{canary}"))
                )
                for i, v in enumerate(CONTROL)
            ],
        }
        results: dict[str, tuple[int, int]] = {}
        for mode, frames in sources.items():
            pages[f"/{mode}.html"] = page(frames)
            page_seen.clear()
            canary_seen.clear()
            hits, done = render(f"http://127.0.0.1:{page_port}/{mode}.html", tmp_path / mode)
            assert done, f"{mode}: the page's own script did not finish"
            requests = [p for p in page_seen if p != "/favicon.ico"] + list(canary_seen)
            results[mode] = (len(set(hits)), len(requests))
    executions = results["sandboxed"][0] + results["unsandboxed"][0]
    outbound = results["sandboxed"][1] + results["unsandboxed"][1]
    note = (
        f"{len(live)} vectors ({len(XSS_VECTORS)} from the sanitizer's corpus made live, "
        f"{len(LOADING_VECTORS)} loaders) as real mail via Dovecot + sync + GET /api/messages; "
        f"sandboxed iframe {results['sandboxed']}, unsandboxed iframe "
        f"{results['unsandboxed']} (runs, requests); control, {len(CONTROL)} raw vectors: "
        f"{results['control'][0]} ran, {results['control'][1]} requests"
    )
    figures.zero("html", "XSS vectors in Chromium: script executions", executions, note)
    figures.zero("html", "XSS vectors in Chromium: outbound requests", outbound, note)
    assert results["control"][0] > 0 and results["control"][1] > 0, "detectors are blind"
    assert executions == outbound == 0, results
