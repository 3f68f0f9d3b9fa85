"""The blob store: content-addressed, atomic, and durable before a row refers to it."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest

from email_service.errors import NotFoundError
from email_service.store import blobs
from email_service.store.blobs import FileBlobStore as BlobStore


def test_put_names_by_sha256_and_is_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"raw mime")
    assert digest == hashlib.sha256(b"raw mime").hexdigest()
    assert store.put(b"raw mime") == digest
    assert store.get(digest) == b"raw mime" and store.exists(digest)
    assert store.path(digest).relative_to(tmp_path / "blobs").parts == (digest[:2], digest)
    assert not list((tmp_path / "blobs").rglob("*.tmp"))
    with pytest.raises(NotFoundError):
        store.get("0" * 64)
    with pytest.raises(NotFoundError):
        store.get("../../etc/passwd")


def test_blobs_of_the_earlier_two_level_layout_are_still_read(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    digest = hashlib.sha256(b"stored by an earlier version").hexdigest()
    legacy = root / digest[:2] / digest[2:4] / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"stored by an earlier version")
    store = BlobStore(root)
    assert store.exists(digest) and store.path(digest) == legacy
    assert store.get(digest) == b"stored by an earlier version"
    assert not store.exists(hashlib.sha256(b"never stored").hexdigest())


def test_a_few_files_are_fsynced_with_their_directories_not_the_whole_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    whole: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "sync", lambda: whole.append(True))
    root = tmp_path / "blobs"
    store = BlobStore(root)
    digest = store.put(b"one message")
    store.flush()
    path = store.path(digest)
    # the file, and its new fan-out directory with the parent that names it
    assert set(synced) == {str(path), str(path.parent), str(root)}
    assert whole == []
    synced.clear()
    store.flush()  # nothing new: nothing to do
    assert synced == []


def test_a_batch_gets_one_sync_of_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    whole: list[bool] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    monkeypatch.setattr(os, "sync", lambda: whole.append(True))
    store = BlobStore(tmp_path / "blobs")
    for n in range(blobs.FSYNC_EACH_MAX + 1):
        store.put(f"message {n}".encode())
    store.flush()
    assert whole == [True] and synced == []


def test_without_fsync_nothing_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    monkeypatch.setattr(os, "sync", lambda: calls.append("sync"))
    store = BlobStore(tmp_path / "blobs", fsync=False)
    store.put(b"x")
    store.flush()
    assert calls == []


def test_tenants_get_their_own_namespace_and_share_nothing(tmp_path: Path) -> None:
    space = blobs.FileBlobSpace(tmp_path / "blobs", fsync=False)
    a, b = space.tenant("tenant-a"), space.tenant("tenant-b")
    digest = a.put(b"the same message")
    assert b.put(b"the same message") == digest
    assert a.path(digest) != b.path(digest)
    assert a.path(digest).is_relative_to(tmp_path / "blobs" / "tenants" / "t_tenant-a")
    assert a.delete(digest) and not a.exists(digest)
    assert not a.delete(digest)  # idempotent
    assert b.get(digest) == b"the same message"  # the other tenant's copy is untouched
    assert space.tenants() == ["tenant-a", "tenant-b"]
    b.destroy()
    b.destroy()  # idempotent
    assert not b.exists(digest) and space.tenants() == ["tenant-a"]


def test_tenant_keys_round_trip_and_stay_inside_the_space() -> None:
    for tenant in ("default", "a.b_c-d", ".", "..", "ünïcode/../x"):
        key = blobs.tenant_key(tenant)
        assert "/" not in key and key not in (".", "..")
        assert blobs.tenant_of_key(key) == tenant
    assert blobs.tenant_of_key("ab") is None


def test_a_second_put_makes_an_old_blob_young_again(tmp_path: Path) -> None:
    store = blobs.FileBlobSpace(tmp_path / "blobs", fsync=False).tenant("t")
    digest = store.put(b"kept by a new reference")
    os.utime(store.path(digest), (1_000_000, 1_000_000))
    assert dict(store.listing())[digest] == 1_000_000
    store.put(b"kept by a new reference")
    assert dict(store.listing())[digest] > 1_000_000


def test_files_and_directories_are_private_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = blobs.FileBlobSpace(tmp_path / "data" / "blobs").tenant("t")
        store.put(b"private mail")
        store.flush()
    finally:
        os.umask(old)
    for path in (tmp_path / "data").rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_a_store_pickles_as_its_arguments(tmp_path: Path) -> None:
    store = blobs.FileBlobSpace(tmp_path / "blobs", fsync=False).tenant("t")
    digest = store.put(b"for a pool worker")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get(digest) == b"for a pool worker" and copy.root == store.root


def test_blobs_of_the_shared_layout_are_read_and_listed_as_legacy(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    digest = hashlib.sha256(b"written before namespaces").hexdigest()
    (root / digest[:2]).mkdir(parents=True)
    (root / digest[:2] / digest).write_bytes(b"written before namespaces")
    space = blobs.FileBlobSpace(root, fsync=False)
    store = space.tenant("t")
    assert store.get(digest) == b"written before namespaces"
    assert not store.delete(digest)  # a tenant never deletes from the shared layout
    legacy = space.legacy()
    assert legacy is not None and [d for d, _ in legacy.listing()] == [digest]
    assert space.tenants() == []


def test_temporaries_of_dead_writers_are_removed_once_old(tmp_path: Path) -> None:
    store = blobs.FileBlobSpace(tmp_path / "blobs", fsync=False).tenant("t")
    digest = store.put(b"x")
    stale = store.path(digest).parent / f"{digest}.1.2.tmp"
    stale.write_bytes(b"half")
    assert store.remove_temporaries(older_than=0) == 0  # young: a writer may be at it
    os.utime(stale, (1_000, 1_000))
    assert store.remove_temporaries(older_than=2_000) == 1 and not stale.exists()
    assert store.exists(digest)
