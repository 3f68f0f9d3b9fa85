"""The blob space a deployment's settings choose (``BLOB_STORE_URL``)."""

from __future__ import annotations

from email_service.config import Settings
from email_service.store.blobs import BlobSpace, FileBlobSpace


def open_space(settings: Settings) -> BlobSpace:
    """Files under DATA_DIR/blobs, or the S3-compatible store of BLOB_STORE_URL."""
    if settings.blob_store_url:
        from email_service.store.blob_s3 import S3BlobSpace, S3Location  # noqa: PLC0415

        return S3BlobSpace(
            S3Location.parse(
                settings.blob_store_url,
                settings.s3_endpoint_url,
                settings.s3_access_key,
                settings.s3_secret_key,
                settings.s3_region,
            )
        )
    return FileBlobSpace(settings.data_dir / "blobs", fsync=settings.blob_fsync)
