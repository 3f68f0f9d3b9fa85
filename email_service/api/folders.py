"""/api/accounts/{id}/folders: create, rename, subscribe and delete folders.

The listing (GET) is with the read API (``api/messages.py``); these routes change the
store at once and queue the ``apply_folder_change`` job that follows on the IMAP server.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from apiflask import APIBlueprint
from pydantic import BaseModel, Field

from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.schemas import JsonUUID, QueryInput, StrictInput
from email_service.api.messages import FolderOut
from email_service.services.folders import manage

bp = APIBlueprint("folders", __name__, url_prefix="/api/accounts", tag="Folders")
# Literal, not an enum: strict validation of a JSON string into an enum fails.
Role = Literal["sent", "drafts", "trash", "junk", "archive", "all", "flagged"]
FolderPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        description="the path, levels split by the account's delimiter (e.g. Projects/2026)",
    ),
]


class FolderCreate(StrictInput):
    """A new folder; ``name`` is a path, or one level inside ``parent_id``."""

    name: FolderPath
    parent_id: JsonUUID | None = Field(None, description="create inside this folder")
    role: Role | None = Field(None, description="RFC 6154 special use, if the server can")


class FolderUpdate(StrictInput):
    """Rename (``name``: the new path) and/or subscribe or unsubscribe."""

    name: FolderPath | None = None
    subscribed: bool | None = None
    force: bool = Field(False, description="rename a folder that has a role (Sent, Trash...)")


class ForceQuery(QueryInput):
    """Delete a folder that has a role too."""

    force: bool = Field(False, description="delete a folder that has a role (Sent, Trash...)")


class FolderChangeOut(BaseModel):
    """The folder as now stored; the job applying the change on the server."""

    folder: FolderOut
    job_id: str


class FolderDeleteOut(BaseModel):
    """The job emptying and deleting the folder on the server."""

    job_id: str


def _out(requested: manage.Requested) -> dict[str, Any]:
    return {"folder": requested.folder, "job_id": requested.job_id}


@bp.post("/<uuid:account_id>/folders")
@bp.input(FolderCreate, arg_name="body")
@bp.output(FolderChangeOut, status_code=202)
@bp.doc(responses=[404, 409, 422])
def create_folder(account_id: uuid.UUID, body: FolderCreate) -> dict[str, Any]:
    """Create a folder (shown at once); the server follows via a job."""
    return _out(
        manage.create_folder(
            runtime(), tenant_id(), account_id, body.name, body.parent_id, body.role
        )
    )


@bp.patch("/<uuid:account_id>/folders/<uuid:folder_id>")
@bp.input(FolderUpdate, arg_name="body")
@bp.output(FolderChangeOut, status_code=202)
@bp.doc(responses=[404, 409, 422])
def update_folder(
    account_id: uuid.UUID, folder_id: uuid.UUID, body: FolderUpdate
) -> dict[str, Any]:
    """Rename and/or (un)subscribe a folder; INBOX keeps its name, role folders need force."""
    return _out(
        manage.update_folder(
            runtime(),
            tenant_id(),
            account_id,
            folder_id,
            name=body.name,
            subscribed=body.subscribed,
            force=body.force,
        )
    )


@bp.delete("/<uuid:account_id>/folders/<uuid:folder_id>")
@bp.input(ForceQuery, location="query", arg_name="query")
@bp.output(FolderDeleteOut, status_code=202)
@bp.doc(responses=[404, 422])
def delete_folder(
    account_id: uuid.UUID, folder_id: uuid.UUID, query: ForceQuery
) -> FolderDeleteOut:
    """Delete a folder, its subfolders and their messages; never INBOX, role folders if forced."""
    requested = manage.delete_folder(runtime(), tenant_id(), account_id, folder_id, query.force)
    return FolderDeleteOut(job_id=requested.job_id)
