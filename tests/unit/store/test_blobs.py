"""The blob store: content-addressed, atomic, and durable before a row refers to it."""

from __future__ import annotations

import hashlib
import os
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
