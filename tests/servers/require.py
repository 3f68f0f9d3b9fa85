"""The one way a test says "the server I need is missing": a skip, or with
``REQUIRE_SERVERS=1`` (as .ci/run and CI set it) a failure.

Every "server missing" skip goes through :func:`server_missing` (PostgreSQL, Redis, Dovecot,
Postfix, a throwaway cluster, and the programs scripts/ensure-services.sh installs such as
chromium and wrk), so that a machine meant to have them all cannot pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

# Set to 1 where every server must be present (CI): a missing one fails its tests.
REQUIRE_ENV = "REQUIRE_SERVERS"


def servers_required() -> bool:
    """Whether a missing server fails the test instead of skipping it."""
    return os.environ.get(REQUIRE_ENV, "") == "1"


def server_missing(reason: str) -> NoReturn:
    """Skip for want of a server; fail instead when ``REQUIRE_SERVERS=1``."""
    if servers_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but a server is missing: {reason}", pytrace=False)
    pytest.skip(reason)
