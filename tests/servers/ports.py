"""Free TCP ports on loopback for the test servers."""

from __future__ import annotations

import socket
from contextlib import ExitStack

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return ``count`` distinct ports on ``host`` that were free a moment ago.

    All sockets stay bound until every port is chosen, so the ports are distinct; another
    process may still take one before the server binds it, which is why the servers retry
    their start with fresh ports when a bind fails.
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port(host: str = LOOPBACK) -> int:
    """One TCP port on ``host`` that nothing listened on a moment ago."""
    return free_ports(1, host)[0]
