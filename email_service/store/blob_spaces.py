"""The blob space a deployment's settings choose (``BLOB_STORE_URL``)."""

from __future__ import annotations

from email_service.config import Settings
from email_service.store.blobs import BlobSpace, FileBlobSpace


def open_space(settings: Settings) -> BlobSpace:
    """Files under DATA_DIR/blobs."""
    return FileBlobSpace(settings.data_dir / "blobs", fsync=settings.blob_fsync)
