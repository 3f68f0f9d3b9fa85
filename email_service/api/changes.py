"""/api/changes: what changed since a state string (JMAP-style, RFC 8620 §5.2).

``GET /api/events`` reaching this (Flask) process means no events process is routed here
(nginx sends it to ``email-service events``): 204, which tells a browser's EventSource to
stop reconnecting (HTML, server-sent events §9.2.3) and the web client to poll here.
"""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint
from pydantic import BaseModel, Field

from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.schemas import QueryInput
from email_service.services.events import feed

bp = APIBlueprint("changes", __name__, url_prefix="/api/changes", tag="Changes")
no_stream = APIBlueprint("no_stream", __name__, url_prefix="/api", tag="Changes")

# Change-log rows per page: enough for a busy minute, small enough to answer quickly.
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


class ChangesQuery(QueryInput):
    """Where to start, which account, how much."""

    since: str | None = Field(
        None, max_length=64, description="new_state of an earlier answer; absent: start here"
    )
    account_id: uuid.UUID | None = Field(None, description="only this account's changes")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="change rows per page")


class TypeChangesOut(BaseModel):
    """Ids of one type; each id is in one list only."""

    created: list[str]
    updated: list[str]
    destroyed: list[str]


class ChangesOut(BaseModel):
    """Changes since ``old_state``, up to ``new_state``."""

    old_state: str | None
    new_state: str = Field(description="pass as since next time")
    has_more_changes: bool = Field(description="true: ask again at once with new_state")
    changes: dict[str, TypeChangesOut] = Field(
        description="per type: message, folder, draft, outbox, account, sync"
    )


@bp.get("")
@bp.input(ChangesQuery, location="query", arg_name="query")
@bp.output(ChangesOut)
@bp.doc(responses=[400, 410, 422])
def get_changes(query: ChangesQuery) -> ChangesOut:
    """Ids created, updated and destroyed since a state; without ``since``, the current state.

    A state older than the change log's retention answers 410 ``cannot_calculate_changes``:
    read the objects again and start from a new state.
    """
    with runtime().db.session() as session:  # one snapshot for the state and the rows
        result = feed.changes_since(
            session, tenant_id(), query.since, query.limit, query.account_id
        )
    return ChangesOut(
        old_state=result.old_state,
        new_state=result.new_state,
        has_more_changes=result.has_more_changes,
        changes={
            name: TypeChangesOut(created=c.created, updated=c.updated, destroyed=c.destroyed)
            for name, c in result.changes.items()
        },
    )


@no_stream.get("/events")
@no_stream.output({}, status_code=204)
def no_events_here() -> tuple[str, int]:
    """No change stream on this address (it is the events process's): poll /api/changes."""
    return "", 204
