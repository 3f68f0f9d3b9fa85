"""Fixtures of the end-to-end tests: the real ``email-service`` command as a subprocess
(tests/servers/service.py), over the servers tests/servers/ starts."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.servers.service import running


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start ``email-service serve`` with an env; returns (base_url, process)."""
    numbers = itertools.count()
    with ExitStack() as stack:

        def start(env: dict[str, str]) -> tuple[str, Any]:
            output = tmp_path / f"serve-{next(numbers)}.out"
            server = stack.enter_context(running(env, output))
            return server.base, server.proc

        yield start
