"""A real Postfix for tests, delivering to the test Dovecot.

An own instance: ``postfix -c <root>/conf`` with its own ``queue_directory`` and
``data_directory`` under ``root``, so the system instance in /etc/postfix is never read
or touched. The config is the shared ``deploy/postfix/main.cf`` + ``master.cf`` (what the
compose container runs) with ``deploy/postfix/test.cf.in`` appended, and the two
listeners moved to loopback high ports with ``postconf -F``:

- ``smtp_port`` (the port 25 role): mail for our domains from anyone, no relaying;
- ``submission_port`` (the 587 role): STARTTLS, then AUTH against Dovecot's users.

Postfix's master must start as root (it drops to ``mail_owner = postfix``); as another
user the fixture skips.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from string import Template

from tests.servers.dovecot import DovecotServer
from tests.servers.ports import LOOPBACK, free_ports
from tests.servers.process import (
    INSTALL_HINT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    GuardedServer,
    ServerStartError,
    find_binary,
    group_alive,
    kill_group,
    log_tail,
    make_traversable,
    start_retrying,
    wait_for_greeting,
    wait_gone,
)

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "postfix"
TEST_PART_TEMPLATE = DEPLOY_DIR / "test.cf.in"
# Domains delivered to Dovecot; everything else is refused ("Relay access denied").
DEFAULT_DOMAINS = ("example.test", "example2.test")
# Queue subdirectories that hold messages not yet delivered (see postfix-files).
PENDING_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
MAIL_OWNER = "postfix"


def missing_reason() -> str | None:
    """Why Postfix cannot run here (for ``pytest.skip``), or None if it can."""
    if find_binary("postfix") is None or find_binary("postconf") is None:
        return f"Postfix is not installed; {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "Postfix's master runs as root only; run the Postfix tests as root"
    try:
        pwd.getpwnam(MAIL_OWNER)
    except KeyError:
        return f"no '{MAIL_OWNER}' user (Debian's postfix package creates it); {INSTALL_HINT}"
    return None


class PostfixServer(GuardedServer):
    """One Postfix instance under ``root`` delivering ``domains`` to ``dovecot``."""

    host = LOOPBACK

    def __init__(
        self, root: Path, dovecot: DovecotServer, domains: Sequence[str] = DEFAULT_DOMAINS
    ) -> None:
        self.root = root
        self.dovecot = dovecot
        self.domains = tuple(domains)
        self.config_dir = root / "conf"
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.log_file = root / "postfix.log"
        self._choose_ports()
        self._master_pid: int | None = None

    def __repr__(self) -> str:
        return f"<PostfixServer {self.root} smtp={self.smtp_port}>"

    @property
    def ca_file(self) -> Path:
        """CA certificate that verifies the server certificate (shared with Dovecot)."""
        return self.dovecot.ca_file

    @property
    def running(self) -> bool:
        return self._master_pid is not None and group_alive(self._master_pid)

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Write the config, start the instance and wait until both ports greet."""
        if self.running:
            return
        reason = missing_reason()
        if reason:
            raise ServerStartError(reason)
        if not self.dovecot.running:
            raise ServerStartError(
                "start Dovecot first: Postfix delivers to it and asks it for AUTH"
            )
        self._prepare_dirs()
        start_retrying(self._start_once, self.stop, self._choose_ports)

    def _choose_ports(self) -> None:
        self.smtp_port, self.submission_port = free_ports(2)

    def stop(self) -> None:
        """``postfix stop``, then make sure no process of the instance is left (idempotent)."""
        pid, self._master_pid = self._master_pid, None
        if pid is not None and group_alive(pid):
            subprocess.run(
                self._postfix("stop"), capture_output=True, timeout=STOP_TIMEOUT + 10, check=False
            )
            if not wait_gone(pid, STOP_TIMEOUT):
                kill_group(pid)
        self._unguard()

    def _prepare_dirs(self) -> None:
        # queue_directory belongs to root; "postfix start" creates its subdirectories
        # with the right owners (post-install create-missing). data_directory must
        # belong to mail_owner.
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = pwd.getpwnam(MAIL_OWNER)
        os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        make_traversable(self.root)

    def _start_once(self) -> None:
        self.write_config()
        result = subprocess.run(
            self._postfix("start"),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise ServerStartError(
                f"postfix start failed ({result.returncode}): {result.stderr.strip()}\n"
                + self._describe()
            )
        pid_file = self.queue_dir / "pid" / "master.pid"
        self._master_pid = int(pid_file.read_text().split()[0])
        self._guard(self._master_pid)
        for port in (self.smtp_port, self.submission_port):
            wait_for_greeting(
                self.host, port, b"220 ", describe=self._describe, alive=lambda: self.running
            )

    def write_config(self) -> None:
        """Shared main.cf + master.cf, the rendered test part, listeners on our ports."""
        shutil.copyfile(DEPLOY_DIR / "master.cf", self.config_dir / "master.cf")
        values = {
            "ROOT": self.root,
            "INSTANCE_NAME": f"postfix-test-{os.getpid()}-{self.smtp_port}",
            "DOMAINS": ", ".join(self.domains),
            "LMTP_PORT": self.dovecot.lmtp_port,
            "AUTH_PORT": self.dovecot.auth_port,
            "KEY_FILE": self.dovecot.tls.key_file,
            "CERT_FILE": self.dovecot.tls.cert_file,
        }
        test_part = Template(TEST_PART_TEMPLATE.read_text()).substitute(values)
        base = (DEPLOY_DIR / "main.cf").read_text()
        (self.config_dir / "main.cf").write_text(base + test_part)
        self._postconf(
            "-Fe",
            f"smtp/inet/service = {self.host}:{self.smtp_port}",
            f"submission/inet/service = {self.host}:{self.submission_port}",
        )

    # ---- queue ---------------------------------------------------------------------

    def queued_files(self) -> list[Path]:
        """Queue files of messages not yet delivered or bounced."""
        return [
            path
            for name in PENDING_QUEUES
            for path in (self.queue_dir / name).rglob("*")
            if path.is_file()
        ]

    def queue_is_empty(self) -> bool:
        return not self.queued_files()

    def flush(self) -> None:
        """Retry deferred mail now (``postqueue -f``)."""
        postqueue = find_binary("postqueue") or "postqueue"
        subprocess.run(
            [postqueue, "-c", str(self.config_dir), "-f"],
            capture_output=True,
            timeout=STOP_TIMEOUT,
            check=True,
        )

    # ---- helpers -------------------------------------------------------------------

    def _postfix(self, command: str) -> list[str]:
        return [find_binary("postfix") or "postfix", "-c", str(self.config_dir), command]

    def _postconf(self, *args: str) -> None:
        postconf = find_binary("postconf") or "postconf"
        subprocess.run(
            [postconf, "-c", str(self.config_dir), *args],
            capture_output=True,
            timeout=STOP_TIMEOUT,
            check=True,
        )

    def _describe(self) -> str:
        return f"postfix in {self.root}\n" + log_tail(self.log_file)
