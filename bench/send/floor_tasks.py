"""The send benchmark's floor: a Celery task that does nothing but send.

Run by ``bench_send.py`` as ``celery -A floor_tasks:app worker`` with the worker settings
``email_service.jobs.make_celery`` gives ours (JSON, late acks, prefetch 1, the same pool
and concurrency) on its own Redis database. Each task hands one prebuilt message to
Postfix with smtplib on a connection its process keeps open (and, in the second floor,
appends it to the sender's Sent folder over a kept IMAP connection, as ours does
after sending), then counts it in Redis. No API, no database, no MIME building, no state
machine: whatever our API and worker do per message comes on top of this, so ours /
smtp-source cannot exceed floor / smtp-source.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
from typing import Any, cast

import redis
from celery import Celery
from imapclient import IMAPClient

BROKER = os.environ.get("BENCH_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/12")
DONE_KEY = "floor:done"

app = Celery("floor", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
SENT = "Sent"
_open: dict[str, Any] = {}


@app.task(name="floor.send")
def send(host: str, port: int, sender: str, recipient: str, message: str, sent_copy: bool) -> None:
    """Submit one message over this process's SMTP connection (and, with ``sent_copy``,
    append it to the sender's Sent folder over this process's IMAP connection, as ours
    does after sending); count it as done."""
    if not _open:
        smtp = smtplib.SMTP(host, port, timeout=60)
        smtp.ehlo()
        _open.update(smtp=smtp, counter=redis.Redis.from_url(BROKER))
    data = message.encode()
    _open["smtp"].sendmail(sender, [recipient], data)
    if sent_copy:
        _imap().append(SENT, data, ["\\Seen"])
    _open["counter"].incr(DONE_KEY)


def _imap() -> IMAPClient:
    if "imap" not in _open:
        imap = IMAPClient(
            os.environ["FLOOR_IMAP_HOST"], int(os.environ["FLOOR_IMAP_PORT"]), ssl=False
        )
        imap.login(os.environ["FLOOR_IMAP_USER"], os.environ["FLOOR_IMAP_PASSWORD"])
        if not imap.folder_exists(SENT):
            with contextlib.suppress(IMAPClient.Error):  # another process made it first
                imap.create_folder(SENT)
        _open["imap"] = imap
    return cast(IMAPClient, _open["imap"])
