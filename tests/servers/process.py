"""Process plumbing shared by the test mail servers: binaries, readiness, logs, cleanup.

Three layers make sure no server outlives the test session: the fixtures stop their
server in a finalizer; an ``atexit`` hook stops whatever is still registered; and each
server has a reaper process that kills the server's process group as soon as the test
process is gone (its stdin pipe reaches EOF), even after ``kill -9`` of pytest.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tests.servers.wait import wait_for

# A cold start takes well under a second here; a loaded CI machine gets generous slack.
START_TIMEOUT = 20.0
# Dovecot and Postfix both stop in well under a second; after this we send SIGKILL.
STOP_TIMEOUT = 5.0
# Lines of server log shown when a start fails.
LOG_TAIL_LINES = 40
# Daemons live in sbin, which is not on a normal user's PATH.
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
INSTALL_HINT = "run `sudo scripts/install-test-deps.sh` to enable these tests"
# Another process may grab a port between choosing and binding it: try again this often.
START_ATTEMPTS = 3


class ServerStartError(RuntimeError):
    """A test mail server did not come up; the message carries its log tail."""


class Stoppable(Protocol):
    def stop(self) -> None: ...


def find_binary(name: str) -> str | None:
    """Path of a server binary, looking in sbin directories too."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which(name, path=search)


def log_tail(*paths: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of each existing file, labelled, for error messages."""
    parts = []
    for path in paths:
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        else:
            parts.append(f"--- {path} (missing)")
    return "\n".join(parts)


def read_greeting(host: str, port: int, timeout: float = 2.0) -> bytes:
    """Connect and return the server's first line (b'' if it closes at once)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
        return data


def wait_for_greeting(
    host: str,
    port: int,
    expect: bytes,
    *,
    describe: Callable[[], str],
    alive: Callable[[], bool] = lambda: True,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll until the server on ``port`` greets with ``expect``; raise with the log tail."""
    last_error = ["no attempt"]

    def greeted() -> bool:
        if not alive():
            raise ServerStartError(f"server exited before port {port} greeted\n{describe()}")
        try:
            greeting = read_greeting(host, port)
        except OSError as exc:
            last_error[0] = repr(exc)
            return False
        last_error[0] = f"unexpected greeting {greeting!r}"
        return greeting.startswith(expect)

    def failed(message: str) -> ServerStartError:
        where = f"{expect!r} greeting on {host}:{port}"
        return ServerStartError(f"{message}: {where} ({last_error[0]})\n{describe()}")

    wait_for(greeted, "the greeting", timeout, interval=0.05, error=failed)


def start_retrying(
    start_once: Callable[[], None], stop: Callable[[], None], new_ports: Callable[[], None]
) -> None:
    """Run ``start_once``; if a port was taken meanwhile, stop, choose new ports, try again."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            start_once()
            return
        except ServerStartError as exc:
            stop()
            if attempt == START_ATTEMPTS or "in use" not in str(exc):
                raise
            new_ports()


def group_pids(pgid: int) -> set[int]:
    """Live (not zombie) processes of process group ``pgid``, a worker's children included.

    Zombies count for ``killpg(pgid, 0)``, and a daemon's exited children may wait a
    while for init to reap them, so this reads /proc.
    """
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return bool(group_pids(pgid))


def kill_group(pgid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group, wait up to ``timeout``, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if wait_gone(pgid, wait):
            return


def wait_gone(pgid: int, timeout: float) -> bool:
    """Wait until process group ``pgid`` is empty; True if it is."""
    try:
        wait_for(lambda: not group_alive(pgid), f"process group {pgid} to end", timeout)
    except AssertionError:
        return False
    return True


def make_traversable(path: Path) -> None:
    """Let the unprivileged mail and login users reach ``path`` (search bit only).

    Temporary directories are created 0700, but Dovecot's processes run as nobody,
    dovecot and dovenull, and Postfix's as postfix, and must walk into them. Only as
    root: otherwise everything runs as the calling user anyway.
    """
    if os.geteuid() != 0:
        return
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if mode & 0o001 == 0:
            directory.chmod((mode & 0o7777) | 0o011)


# Runs in its own session so a Ctrl-C in the terminal does not reach it; waits on stdin.
_REAPER_CODE = """
import os, signal, sys, time
pgids = [int(arg) for arg in sys.argv[1:]]
if sys.stdin.readline().strip() == "release":
    sys.exit(0)
for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        alive = []
        for pgid in pgids:
            try:
                os.killpg(pgid, 0)
                alive.append(pgid)
            except ProcessLookupError:
                pass
        if not alive:
            sys.exit(0)
        time.sleep(0.1)
"""


class Reaper:
    """Kills a server's process group when this (test) process dies without stopping it."""

    def __init__(self, pgid: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER_CODE, str(pgid)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    def release(self) -> None:
        """The server was stopped normally: let the reaper exit without killing."""
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.write(b"release\n")
                stdin.close()
            except BrokenPipeError:
                pass
        try:
            self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# A reaper per process group started through ``guard``: it kills the group if this test
# process dies without stopping it, so nothing outlives an interrupted run.
_REAPERS: dict[int, Reaper] = {}


def guard(proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Have ``proc``'s process group (it must lead one) killed if this process dies first."""
    _REAPERS[proc.pid] = Reaper(proc.pid)
    return proc


def guard_popen(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, guarded by a reaper."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, start_new_session=True, **options)
    guard(proc)
    return proc


def kill_tree(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal ``proc``'s process group; SIGKILL what is left after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reaper = _REAPERS.pop(proc.pid, None)
    if reaper is not None:
        reaper.release()


class GuardedServer:
    """A server this process started: stopped at exit and reaped if this process dies."""

    _reaper: Reaper | None = None

    def stop(self) -> None:
        raise NotImplementedError

    def _guard(self, pgid: int) -> None:
        """Register for the exit hook; have process group ``pgid`` reaped."""
        register(self)
        self._reaper = Reaper(pgid)

    def _unguard(self) -> None:
        """The server is stopped: release its reaper, forget it."""
        if self._reaper is not None:
            self._reaper.release()
            self._reaper = None
        unregister(self)


_running: list[Stoppable] = []


def register(server: Stoppable) -> None:
    """Remember a started server so that it is stopped at interpreter exit."""
    if server not in _running:
        _running.append(server)


def unregister(server: Stoppable) -> None:
    if server in _running:
        _running.remove(server)


@atexit.register
def _stop_all() -> None:
    # Postfix before Dovecot: stop the one that delivers into the other first.
    for server in reversed(list(_running)):
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001 -- best effort at exit, keep stopping others
            print(f"warning: could not stop {server!r}: {exc}", file=sys.stderr)
