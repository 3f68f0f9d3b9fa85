"""The blob store's contract on both backends: DATA_DIR's files and a real S3 server
(SeaweedFS on loopback)."""

from __future__ import annotations

import hashlib
import pickle
import time
from typing import Any

import pytest

from email_service.errors import NotFoundError
from email_service.services.lifecycle.blob_spaces import open_space
from email_service.store.blobs import BlobSpace
from tests.conftest import TENANT_A, TENANT_B


@pytest.fixture
def space(sqlite_settings: Any, blob_backend: dict[str, str]) -> BlobSpace:
    """The blob space the settings choose."""
    return open_space(sqlite_settings(**blob_backend))


def test_put_get_idempotent_and_missing(space: BlobSpace) -> None:
    store = space.tenant(TENANT_A)
    digest = store.put(b"raw mime")
    assert digest == hashlib.sha256(b"raw mime").hexdigest()
    assert store.put(b"raw mime") == digest
    store.flush()
    assert store.get(digest) == b"raw mime" and store.exists(digest)
    assert [d for d, _ in store.listing()] == [digest]
    for bad in ("0" * 64, "../../etc/passwd"):
        assert not store.exists(bad)
        with pytest.raises(NotFoundError):
            store.get(bad)


def test_tenants_share_nothing_and_delete_only_their_own(space: BlobSpace) -> None:
    a, b = space.tenant(TENANT_A), space.tenant(TENANT_B)
    digest = a.put(b"the same message")
    assert b.put(b"the same message") == digest
    assert space.tenants() == sorted([TENANT_A, TENANT_B])
    assert a.delete(digest) and not a.delete(digest)  # idempotent
    assert not a.exists(digest) and b.get(digest) == b"the same message"
    b.put(b"another")
    b.destroy()
    b.destroy()  # idempotent
    a.prune()  # what an emptied namespace leaves (directories) goes too
    assert list(b.listing()) == [] and space.tenants() == []


def test_a_second_put_refreshes_the_age(space: BlobSpace) -> None:
    store = space.tenant(TENANT_A)
    digest = store.put(b"referenced again")
    [(_, first)] = list(store.listing())
    while time.time() < first + 1.5:  # object stores keep whole seconds
        time.sleep(0.1)
    store.put(b"referenced again")
    [(again, second)] = list(store.listing())
    assert again == digest and second > first


def test_a_store_travels_to_a_pool_process_by_its_arguments(space: BlobSpace) -> None:
    store = space.tenant(TENANT_A)
    digest = store.put(b"for a parsing process")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get(digest) == b"for a parsing process"
