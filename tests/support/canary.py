"""Count a canary string wherever mail may be kept: files, a PostgreSQL dump, Redis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis
from minio import Minio


def in_files(root: Path, needle: bytes) -> dict[str, int]:
    """Occurrences per file under ``root`` (only files that have some)."""
    found: dict[str, int] = {}
    for path in root.rglob("*"):
        if path.is_file():
            count = path.read_bytes().count(needle)
            if count:
                found[str(path.relative_to(root))] = count
    return found


def pg_dump_binary() -> str:
    """pg_dump on PATH, else the newest one Debian's packages installed."""
    found = shutil.which("pg_dump")
    return found or str(max(Path("/usr/lib/postgresql").glob("*/bin/pg_dump")))


def in_pg_dump(url: str, needle: bytes) -> int:
    """Occurrences in a plain-text dump of the whole database."""
    dump = subprocess.run(
        [pg_dump_binary(), "--data-only", "--no-owner", url],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return dump.count(needle)


def in_redis(url: str, needle: bytes) -> int:
    """Occurrences in every key name and value of one Redis database (values read by type:
    DUMP's serialization may compress them)."""
    client = redis.Redis.from_url(url)
    count = 0
    for key in client.scan_iter(count=1000):
        count += key.count(needle)
        for value in _values(client, key):
            count += value.count(needle)
    return count


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    if kind == b"hash":
        return [part for pair in client.hgetall(key).items() for part in pair]
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return list(client.zrange(key, 0, -1))
    if kind == b"stream":
        return [repr(entry).encode() for entry in client.xrange(key)]
    return []


def in_objects(client: Minio, bucket: str, prefix: str, needle: bytes) -> dict[str, int]:
    """Occurrences per object under ``prefix`` of an S3 bucket (only objects that have some)."""
    found: dict[str, int] = {}
    for item in client.list_objects(bucket, prefix, recursive=True):
        if item.is_dir or not item.object_name:
            continue
        response = client.get_object(bucket, item.object_name)
        try:
            count = response.read().count(needle)
        finally:
            response.close()
            response.release_conn()
        if count:
            found[item.object_name] = count
    return found
