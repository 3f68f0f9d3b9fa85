"""GET /api/sync/search: search with the Gmail-style syntax, per tenant or account."""

from __future__ import annotations

import uuid
from typing import Literal

from apiflask import APIBlueprint
from flask import Response
from pydantic import BaseModel, Field

from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.responses import json_response
from email_service.api.http.schemas import MAX_PAGE_SIZE, QueryInput
from email_service.api.messages import MessageSummary
from email_service.services import messages, search

bp = APIBlueprint("search", __name__, url_prefix="/api/sync", tag="Search")
# A query longer than this is refused by the parser too; the schema says so up front.
MAX_QUERY_LENGTH = 1000


class SearchQuery(QueryInput):
    """Search parameters."""

    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        description='e.g. from:alice has:attachment -is:read "exact phrase"',
    )
    account_id: uuid.UUID | None = None
    order: Literal["relevance", "date"] = "relevance"
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=512)


class SearchResult(MessageSummary):
    """A matching message with its relevance and a marked snippet (HTML-escaped)."""

    rank: float
    headline: str | None


class SearchResults(BaseModel):
    """A page of results."""

    items: list[SearchResult]
    next_cursor: str | None


@bp.get("/search")
@bp.input(SearchQuery, location="query", arg_name="params")
@bp.output(SearchResults)
@bp.doc(responses=[400, 503])
def search_messages(params: SearchQuery) -> Response:
    """Search messages; a syntax error is a 400 whose ``position`` points into the query.

    A search still running after ``SEARCH_TIMEOUT_SECONDS`` is stopped: 503, ``search_timeout``.
    """
    settings = runtime().settings
    with runtime().db.searching() as conn:
        page = search.search(
            conn,
            tenant_id(),
            params.query,
            account_id=params.account_id,
            limit=params.limit,
            cursor=params.cursor,
            order=params.order,
            timeout=settings.search_timeout_seconds or None,
        )
    items = [
        {**messages.summary_view(hit.message), "rank": hit.rank, "headline": hit.headline}
        for hit in page.items
    ]
    return json_response(SearchResults, {"items": items, "next_cursor": page.next_cursor})
