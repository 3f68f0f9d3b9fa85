"""A real Dovecot (IMAP, IMAPS, POP3, LMTP, auth for Postfix) for tests.

Runs ``dovecot -F -c <root>/dovecot.conf`` where that file is ``deploy/dovecot/test.conf.in``
rendered for this instance; it includes the shared ``deploy/dovecot/dovecot.conf`` that the
compose container uses too. Everything lives under ``root``: config, users (one
passwd-file each), sockets, state, log and mail. Listens on 127.0.0.1 only, on free high ports.

Dovecot refuses to give mail access to uid 0, so when the tests run as root the mail
belongs to ``nobody``; otherwise to the calling user (and Dovecot runs unprivileged).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tests.servers.ports import LOOPBACK, free_ports
from tests.servers.process import (
    INSTALL_HINT,
    GuardedServer,
    ServerStartError,
    find_binary,
    kill_group,
    log_tail,
    make_traversable,
    start_retrying,
    wait_for_greeting,
)
from tests.servers.tls import TLSFiles, make_tls_files

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "dovecot"
BASE_CONF = DEPLOY_DIR / "dovecot.conf"
TEST_CONF_TEMPLATE = DEPLOY_DIR / "test.conf.in"
# The OAuth2 part (XOAUTH2/OAUTHBEARER through token introspection), when asked for.
OAUTH_CONF_TEMPLATE = DEPLOY_DIR / "oauth2.conf.in"
OAUTH_EXT_TEMPLATE = DEPLOY_DIR / "oauth2.conf.ext.in"
# Protocol binaries the shared config enables (dovecot-imapd, -pop3d, -lmtpd packages).
PROTOCOL_BINARIES = ("imap", "pop3", "lmtp")
# passwd-file fields are separated by ':' and records by newlines.
FORBIDDEN_IN_CREDENTIALS = (":", "\n", "\r")


def missing_reason() -> str | None:
    """Why Dovecot cannot run here (for ``pytest.skip``), or None if it can."""
    dovecot = find_binary("dovecot")
    if dovecot is None:
        return f"Dovecot is not installed; {INSTALL_HINT}"
    doveconf = find_binary("doveconf") or "doveconf"
    out = subprocess.run(
        [doveconf, "-c", "/dev/null", "-h", "libexec_dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    libexec = Path(out.stdout.strip() or "/usr/lib/dovecot")
    missing = [name for name in PROTOCOL_BINARIES if not (libexec / name).exists()]
    if missing:
        return f"Dovecot lacks {', '.join(missing)} ({libexec}); {INSTALL_HINT}"
    return None


@dataclass(frozen=True)
class MailAccount:
    """An IMAP/SMTP login on the test servers."""

    email: str
    password: str


@dataclass(frozen=True)
class _Ports:
    imap: int
    imaps: int
    pop3: int
    pop3s: int
    lmtp: int
    auth: int

    @classmethod
    def choose(cls) -> _Ports:
        return cls(*free_ports(6))


@dataclass(frozen=True)
class _Identity:
    """Unix users that own the mail and run Dovecot's unprivileged processes."""

    mail_uid: int
    mail_gid: int
    internal_user: str
    internal_group: str
    login_user: str

    @classmethod
    def for_current_process(cls) -> _Identity:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            return cls(nobody.pw_uid, nobody.pw_gid, "dovecot", "dovecot", "dovenull")
        me = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        return cls(os.geteuid(), os.getegid(), me, group, me)


class DovecotServer(GuardedServer):
    """One Dovecot instance under ``root``; ``start()``, use, ``stop()``."""

    host = LOOPBACK

    def __init__(
        self, root: Path, tls: TLSFiles | None = None, introspection_url: str | None = None
    ) -> None:
        self.root = root
        self.introspection_url = introspection_url
        self.identity = _Identity.for_current_process()
        self.tls = tls or make_tls_files(root / "tls")
        self.config_file = root / "dovecot.conf"
        self.users_dir = root / "users"
        self.log_file = root / "dovecot.log"
        self.stderr_file = root / "dovecot.stderr"
        self.mail_root = root / "mail"
        self._ports = _Ports.choose()
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<DovecotServer {self.root} imap={self.imap_port}>"

    # ---- addresses -----------------------------------------------------------------

    @property
    def imap_port(self) -> int:
        """Plain IMAP with STARTTLS (the 143 role)."""
        return self._ports.imap

    @property
    def imaps_port(self) -> int:
        """IMAP over implicit TLS (the 993 role)."""
        return self._ports.imaps

    @property
    def pop3_port(self) -> int:
        return self._ports.pop3

    @property
    def pop3s_port(self) -> int:
        return self._ports.pop3s

    @property
    def lmtp_port(self) -> int:
        """LMTP over TCP, where Postfix delivers."""
        return self._ports.lmtp

    @property
    def auth_port(self) -> int:
        """Dovecot auth protocol over TCP, used by Postfix for SMTP AUTH."""
        return self._ports.auth

    @property
    def ca_file(self) -> Path:
        """CA certificate that verifies the server certificate (localhost, 127.0.0.1)."""
        return self.tls.ca_file

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---- users ---------------------------------------------------------------------

    def add_user(self, email: str, password: str) -> MailAccount:
        """Create a login; Dovecot sees it at once, even while running.

        Replacing the password of an existing login may take a second to be seen
        (Dovecot re-reads a changed passwd-file at most once a second).
        """
        email = email.lower()
        # The address is also the passwd-file's name: no '/'.
        unusable = any(c in email + password for c in FORBIDDEN_IN_CREDENTIALS)
        if "@" not in email or "/" in email or unusable:
            raise ValueError(f"unusable test account {email!r}")
        account = MailAccount(email, password)
        self._write_passwd_file(account)
        return account

    def maildir(self, email: str) -> Path:
        """The user's Maildir (exists after the first login or delivery)."""
        local, domain = email.lower().split("@", 1)
        return self.mail_root / domain / local / "Maildir"

    def _write_passwd_file(self, account: MailAccount) -> None:
        # passwd-file: user:{scheme}password:uid:gid:gecos:home:shell:extra_fields, one
        # file per user (see test.conf.in). Written to a temporary name and renamed, so
        # the auth process never reads half a file.
        self.users_dir.mkdir(parents=True, exist_ok=True)
        self.users_dir.chmod(0o755)
        path = self.users_dir / account.email
        tmp = self.users_dir / f".{account.email}.tmp"
        tmp.write_text(f"{account.email}:{{PLAIN}}{account.password}::::::\n")
        tmp.chmod(0o644)
        tmp.replace(path)

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Write the config, start Dovecot and wait until IMAP and LMTP greet."""
        if self.running:
            return
        reason = missing_reason()
        if reason:
            raise ServerStartError(reason)
        self._prepare_dirs()
        start_retrying(self._start_once, self.stop, self._choose_ports)

    def _choose_ports(self) -> None:
        self._ports = _Ports.choose()

    def stop(self) -> None:
        """Stop Dovecot and all its processes (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            kill_group(proc.pid)
            proc.wait()
        self._unguard()

    def _prepare_dirs(self) -> None:
        for sub in ("run", "state"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        os.chown(self.mail_root, self.identity.mail_uid, self.identity.mail_gid)
        self.users_dir.mkdir(exist_ok=True)
        make_traversable(self.root)

    def _start_once(self) -> None:
        self.config_file.write_text(self.render_config())
        self._write_oauth_config()
        with self.stderr_file.open("wb") as stderr:
            self._proc = subprocess.Popen(
                [find_binary("dovecot") or "dovecot", "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        self._guard(self._proc.pid)
        for port, greeting in ((self.imap_port, b"* OK"), (self.lmtp_port, b"220 ")):
            wait_for_greeting(
                self.host, port, greeting, describe=self._describe, alive=lambda: self.running
            )

    def render_config(self) -> str:
        """deploy/dovecot/test.conf.in with this instance's paths, ports and users."""
        ident = self.identity
        values = {
            "BASE_CONF": BASE_CONF,
            "INSTANCE_NAME": f"email-service-test-{os.getpid()}-{self.imap_port}",
            "ROOT": self.root,
            "CERT_FILE": self.tls.cert_file,
            "KEY_FILE": self.tls.key_file,
            "INTERNAL_USER": ident.internal_user,
            "INTERNAL_GROUP": ident.internal_group,
            "LOGIN_USER": ident.login_user,
            "MAIL_UID": ident.mail_uid,
            "MAIL_GID": ident.mail_gid,
            "IMAP_PORT": self.imap_port,
            "IMAPS_PORT": self.imaps_port,
            "POP3_PORT": self.pop3_port,
            "POP3S_PORT": self.pop3s_port,
            "LMTP_PORT": self.lmtp_port,
            "AUTH_PORT": self.auth_port,
        }
        return Template(TEST_CONF_TEMPLATE.read_text()).substitute(values)

    def _write_oauth_config(self) -> None:
        """oauth2.conf (+ its .ext) from deploy/, or an empty file: no OAuth2 mechanisms."""
        oauth_conf = self.root / "oauth2.conf"
        if self.introspection_url is None:
            oauth_conf.write_text("")
            return
        values = {"ROOT": self.root, "INTROSPECTION_URL": self.introspection_url}
        oauth_conf.write_text(Template(OAUTH_CONF_TEMPLATE.read_text()).substitute(values))
        ext = self.root / "oauth2.conf.ext"
        ext.write_text(Template(OAUTH_EXT_TEMPLATE.read_text()).substitute(values))
        ext.chmod(0o644)

    def _describe(self) -> str:
        return f"dovecot in {self.root}\n" + log_tail(self.stderr_file, self.log_file)
