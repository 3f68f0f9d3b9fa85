"""parse_email_body: (re)parse a stored message from its raw MIME.

For messages stored while ENABLE_EMAIL_PARSING was off, after a parser upgrade, or to
retry one stored raw with a parse error. Threading columns are left as they are.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from email_service.errors import FeatureDisabledError
from email_service.mail.mime.parse import Limits, parse_message
from email_service.services.events import record as announce
from email_service.services.messages import get_message
from email_service.services.runtime import Runtime
from email_service.services.sync.ingest import parsed_columns
from email_service.store.blobs import BlobStore
from email_service.store.change_log import Op
from email_service.store.models import Attachment
from email_service.store.search.index import search_document

PARSE_TASK = "parse_email_body"


def require_parsing_enabled(runtime: Runtime) -> None:
    """FeatureDisabledError unless ENABLE_EMAIL_PARSING."""
    if not runtime.settings.enable_email_parsing:
        raise FeatureDisabledError("email parsing is disabled (ENABLE_EMAIL_PARSING=false)")


def reparse(
    session: Session,
    blobs: BlobStore,
    tenant_id: str,
    message_id: uuid.UUID,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Parse the raw MIME again and replace bodies, addresses, attachments, search text."""
    row = get_message(session, tenant_id, message_id)
    parsed = parse_message(blobs.get(row.blob_sha256), limits or Limits())
    columns = parsed_columns(parsed)
    for name, value in columns.items():
        setattr(row, name, value)
    session.execute(delete(Attachment).where(Attachment.message_id == row.id))
    for a in parsed.attachments:
        session.add(
            Attachment(
                tenant_id=tenant_id,
                message_id=row.id,
                part_index=a.index,
                filename=a.filename,
                content_type=a.content_type[:255],
                size=a.size,
                content_id=a.content_id,
                is_inline=a.is_inline,
            )
        )
    row.search_text = search_document(columns, [a.filename for a in parsed.attachments])
    session.flush()
    announce.message_rows(session, [row], Op.UPDATED)  # its content and attachments
    return {
        "message_id": str(row.id),
        "parse_error": parsed.parse_error,
        "attachments": len(parsed.attachments),
    }


def request_parse(runtime: Runtime, tenant_id: str, message_id: uuid.UUID) -> str:
    """Check the message exists for the tenant, then queue its parse; returns the job id."""
    require_parsing_enabled(runtime)
    with runtime.db.session() as session:
        get_message(session, tenant_id, message_id)
    job_id = uuid.uuid4().hex
    assert runtime.queue is not None, "no job queue wired"
    runtime.queue.enqueue(PARSE_TASK, job_id, message_id=str(message_id), tenant_id=tenant_id)
    return job_id
