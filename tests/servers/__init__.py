"""Real mail servers (Dovecot, Postfix) for tests, started from the configs in deploy/.

``fixtures`` is the pytest plugin; ``DovecotServer`` and ``PostfixServer`` can also be
used directly, e.g. by a benchmark or to try the configs by hand.
"""

from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.postfix import PostfixServer
from tests.servers.process import ServerStartError
from tests.servers.tls import TLSFiles, make_tls_files

__all__ = [
    "DovecotServer",
    "MailAccount",
    "PostfixServer",
    "ServerStartError",
    "TLSFiles",
    "make_tls_files",
]
