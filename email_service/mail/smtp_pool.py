"""A small per-process pool of authenticated SMTP connections (``SMTP_POOL_SIZE`` idle).

A connection is reused only for the same target (host, port, security, login, address).
One taken from the pool that turns out dead fails before the final "." of DATA, so one
fresh attempt on a new connection cannot duplicate the message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from email_service.errors import RemoteError, RemoteTemporaryError
from email_service.mail.smtp import SmtpReply, SmtpSession, SmtpTarget


class SmtpPool:
    """Keeps up to ``size`` idle connections per process, reused for the same target."""

    def __init__(self, size: int, connect: Callable[[SmtpTarget], SmtpSession] = SmtpSession):
        self.size = size
        self._connect = connect
        self._idle: list[SmtpSession] = []
        self._lock = threading.Lock()

    def send(
        self,
        target: SmtpTarget,
        sender: str,
        recipients: list[str],
        data: bytes,
        *,
        smtputf8: bool = False,
        before_final_dot: Callable[[], None] | None = None,
        envid: str | None = None,
    ) -> SmtpReply:
        """Submit one message on a pooled (or new) connection (``envid``: see smtp.py)."""

        def transaction(session: SmtpSession) -> SmtpReply:
            return session.send_message(
                sender,
                recipients,
                data,
                smtputf8=smtputf8,
                before_final_dot=before_final_dot,
                envid=envid,
            )

        session = self._take(target)
        if session is not None:
            try:
                return self._use(session, transaction)
            except RemoteTemporaryError as exc:
                if not exc.details.get("connection_lost"):
                    raise
                # The pooled connection had gone stale; it broke before the final ".",
                # so the server kept nothing and one fresh attempt cannot duplicate.
        session = self._connect(target)
        return self._use(session, transaction)

    def _use(
        self, session: SmtpSession, transaction: Callable[[SmtpSession], SmtpReply]
    ) -> SmtpReply:
        try:
            reply = transaction(session)
        except RemoteError:
            self._give_back(session)  # closed sessions are dropped there
            raise
        except BaseException:
            session.abort()
            raise
        self._give_back(session)
        return reply

    def _take(self, target: SmtpTarget) -> SmtpSession | None:
        with self._lock:
            for index, session in enumerate(self._idle):
                if session.target == target:
                    del self._idle[index]
                    if session.usable:
                        return session
                    session.abort()  # idle too long: the server may be gone, no QUIT wait
                    return None
        return None

    def _give_back(self, session: SmtpSession) -> None:
        if not session.usable:
            session.close()
            return
        with self._lock:
            self._idle.append(session)
            surplus = self._idle[: max(0, len(self._idle) - self.size)]
            del self._idle[: len(surplus)]
        for old in surplus:
            old.close()

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()
