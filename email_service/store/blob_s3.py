"""Blobs in an S3-compatible object store: ``s3://bucket/prefix`` (BLOB_STORE_URL).

Keys mirror the file layout: ``<prefix>tenants/t_<tenant>/ab/<sha256>``. A PUT is atomic
and durable once acknowledged, so ``flush`` has nothing left to do and a row is committed
only after its blob's PUT returned. A put of bytes already stored is a PUT again: that
refreshes the object's modification time, which the sweeper's grace period reads, exactly
as the file store's utime does.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from email_service.errors import ConfigError, NotFoundError
from email_service.store.blobs import HEX64, BlobSpace, BlobStore, tenant_key, tenant_of_key

# Error codes of a missing object (a missing bucket is a configuration error, not this).
MISSING = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")
# Keys per multi-object DELETE request (the S3 API's maximum).
DELETE_BATCH = 1000


@dataclass(frozen=True)
class S3Location:
    """Where the blobs are and how to reach them (picklable: pool workers rebuild clients)."""

    endpoint: str  # host:port
    secure: bool
    access_key: str | None
    secret_key: str | None
    region: str
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(
        cls,
        url: str,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str,
    ) -> S3Location:
        """From ``s3://bucket/prefix`` and the endpoint's URL (unset: AWS S3)."""
        parts = urlsplit(url)
        endpoint = urlsplit(endpoint_url or "https://s3.amazonaws.com")
        if parts.scheme != "s3" or not parts.netloc or endpoint.scheme not in ("http", "https"):
            raise ConfigError("invalid configuration: BLOB_STORE_URL/S3_ENDPOINT_URL")
        prefix = parts.path.strip("/")
        return cls(
            endpoint=endpoint.netloc,
            secure=endpoint.scheme == "https",
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            bucket=parts.netloc,
            prefix=f"{prefix}/" if prefix else "",
        )


@cache
def client(location: S3Location) -> Minio:
    """One client (and connection pool) per location and process."""
    return Minio(
        location.endpoint,
        access_key=location.access_key,
        secret_key=location.secret_key,
        secure=location.secure,
        region=location.region,
    )


class S3BlobStore(BlobStore):
    """One tenant's blobs under a key prefix."""

    def __init__(self, location: S3Location, prefix: str) -> None:
        self.location = location
        self.prefix = prefix  # ends in "/"
        self.bucket = location.bucket

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its arguments (the client is rebuilt in the other process)."""
        return (S3BlobStore, (self.location, self.prefix))

    def key(self, digest: str) -> str:
        """The object key of a digest."""
        if not HEX64.match(digest):
            raise NotFoundError("no such blob")
        return f"{self.prefix}{digest[:2]}/{digest}"

    def put(self, data: bytes) -> str:
        """PUT the bytes (again, if stored: that makes them young); their SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        client(self.location).put_object(self.bucket, self.key(digest), io.BytesIO(data), len(data))
        return digest

    def flush(self) -> None:
        """Nothing: an acknowledged PUT is durable."""

    def get(self, digest: str) -> bytes:
        """The bytes, or NotFoundError."""
        try:
            response = client(self.location).get_object(self.bucket, self.key(digest))
        except S3Error as exc:
            if exc.code in MISSING:
                raise NotFoundError("no such blob") from None
            raise
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def exists(self, digest: str) -> bool:
        """True if the object is there."""
        if not HEX64.match(digest):
            return False
        try:
            client(self.location).stat_object(self.bucket, self.key(digest))
        except S3Error as exc:
            if exc.code in MISSING:
                return False
            raise
        return True

    def delete(self, digest: str) -> bool:
        """DELETE the object; False if it was not there."""
        if not self.exists(digest):
            return False
        client(self.location).remove_object(self.bucket, self.key(digest))
        return True

    def listing(self) -> Iterator[tuple[str, float]]:
        """Every object under the tenant's prefix with its modification time."""
        objects = client(self.location).list_objects(self.bucket, self.prefix, recursive=True)
        for item in objects:
            name = (item.object_name or "").rsplit("/", 1)[-1]
            if HEX64.match(name) and item.last_modified is not None:
                yield name, item.last_modified.timestamp()

    def destroy(self) -> None:
        """DELETE every object under the prefix, in batches; raises if one could not go."""
        s3 = client(self.location)
        keys = [
            item.object_name
            for item in s3.list_objects(self.bucket, self.prefix, recursive=True)
            if item.object_name
        ]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [DeleteObject(name) for name in keys[start : start + DELETE_BATCH]]
            errors = list(s3.remove_objects(self.bucket, batch))
            if errors:
                raise OSError(f"{len(errors)} objects not deleted: {errors[0]}")

    def prune(self) -> None:
        """Nothing: an object store has no empty directories."""


class S3BlobSpace(BlobSpace):
    """Every tenant's blobs in one bucket, under ``<prefix>tenants/``."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self.root = f"{location.prefix}tenants/"

    def tenant(self, tenant_id: str) -> S3BlobStore:
        """The tenant's prefix."""
        return S3BlobStore(self.location, f"{self.root}{tenant_key(tenant_id)}/")

    def tenants(self) -> list[str]:
        """Tenants with at least one object (a server may list emptied prefixes too)."""
        s3 = client(self.location)
        found: list[str] = []
        for item in s3.list_objects(self.location.bucket, self.root):
            name = item.object_name or ""
            tenant = tenant_of_key(name.rstrip("/").rsplit("/", 1)[-1])
            if item.is_dir and tenant is not None and self._has_objects(name):
                found.append(tenant)
        return sorted(found)

    def _has_objects(self, prefix: str) -> bool:
        objects = client(self.location).list_objects(self.location.bucket, prefix, recursive=True)
        return any(not item.is_dir for item in objects)

    def legacy(self) -> BlobStore | None:
        """None: object stores came with namespaces."""
        return None
