"""A scripted SMTP server on loopback (aiosmtpd's Controller in a thread): the fault seam
for what a real Postfix will not do on demand.

Each end of DATA consumes the next step of ``script`` (then ``default``):

- ``"250"``: take the message (recorded in ``delivered``) and say so;
- ``"4xx ..."`` / ``"5xx ..."``: refuse it with that reply (not recorded);
- ``"drop"``: take the message, then cut the connection before replying (ambiguous);
- ``"hold"``: take the message, then wait for ``release`` before replying (a slow server,
  time enough to kill the client).

``hold_rcpts`` makes that many first RCPTs wait for ``release`` instead: the client is
stopped before DATA. With ``relay_to`` (host, port) every message taken is also handed on
to that SMTP server (a real Postfix) before the step's reply, or its absence.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.servers.ports import free_port

# How long a held step waits for release before giving up (a broken test, never reached).
HOLD_LIMIT_S = 120.0


@dataclass
class Delivered:
    """One message the server took."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Seam:
    """Script and record of the scripted server."""

    script: list[str] = field(default_factory=list)
    default: str = "250"
    hold_rcpts: int = 0
    delivered: list[Delivered] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)  # every RCPT TO, accepted or not
    data_ends: int = 0  # ends of DATA seen
    arrived: threading.Event = field(default_factory=threading.Event)  # a held step began
    release: threading.Event = field(default_factory=threading.Event)
    host: str = "127.0.0.1"
    port: int = 0
    relay_to: tuple[str, int] | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.rcpts.append(address)
        if self.hold_rcpts > 0:
            self.hold_rcpts -= 1
            self.arrived.set()
            await asyncio.to_thread(self.release.wait, HOLD_LIMIT_S)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_ends += 1
        step = self.script.pop(0) if self.script else self.default
        if step[0] in "45":
            return step
        taken = Delivered(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        self.delivered.append(taken)
        if self.relay_to is not None:
            await asyncio.to_thread(_relay, self.relay_to, taken)
        if step == "drop":
            server.transport.abort()  # the message is taken; the reply never leaves
            return "250 2.0.0 never sent"
        if step == "hold":
            self.arrived.set()
            await asyncio.to_thread(self.release.wait, HOLD_LIMIT_S)
        return "250 2.0.0 OK queued"


def _relay(server: tuple[str, int], message: Delivered) -> None:
    with smtplib.SMTP(*server, local_hostname="seam.example.test", timeout=30) as smtp:
        smtp.sendmail(message.mail_from, message.rcpt_tos, message.content)


@contextmanager
def smtp_seam(**options: Any) -> Iterator[Seam]:
    """Run a :class:`Seam` server for the duration of the block."""
    seam = Seam(**options)
    seam.port = free_port()
    controller = Controller(seam, hostname=seam.host, port=seam.port)
    controller.start()
    try:
        yield seam
    finally:
        seam.release.set()
        controller.stop()
