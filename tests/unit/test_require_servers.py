"""REQUIRE_SERVERS=1 turns "a server is missing" skips into failures, and only those.

A child pytest session (pytester) runs the real server fixtures with Dovecot made to look
uninstalled, so this needs no server itself.
"""

from __future__ import annotations

import pytest

from tests.servers import dovecot as dovecot_mod
from tests.servers.require import REQUIRE_ENV

TESTS = """
import pytest

from tests.servers.require import server_missing


def test_needs_dovecot(dovecot):
    pass


def test_needs_another_server():
    server_missing("no frobnicator on this machine")


def test_skips_for_another_reason():
    pytest.skip("not a server: CPython's test corpus is not installed")
"""
MISSING = "Dovecot is not installed; run the install script"


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A child session with the suite's server fixtures and no Dovecot."""
    monkeypatch.setattr(dovecot_mod, "missing_reason", lambda: MISSING)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    pytester.makepyfile(test_servers=TESTS)
    return pytester


def test_missing_servers_skip_by_default(run: pytest.Pytester) -> None:
    result = run.runpytest("--assert=plain", "-p", "tests.servers.fixtures", "-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines([f"*{MISSING}*", "*no frobnicator on this machine*"])


def test_with_require_servers_missing_servers_fail(
    run: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    result = run.runpytest("--assert=plain", "-p", "tests.servers.fixtures", "-rA")
    result.assert_outcomes(errors=1, failed=1, skipped=1)  # the fixture errs, the test fails
    result.stdout.fnmatch_lines(
        [
            f"*REQUIRE_SERVERS=1 but a server is missing: {MISSING}*",
            "*REQUIRE_SERVERS=1 but a server is missing: no frobnicator on this machine*",
            "SKIPPED*not a server: CPython's test corpus is not installed*",
        ],
        consecutive=False,
    )


@pytest.mark.parametrize("value", ["0", ""])
def test_only_the_value_1_requires_servers(
    run: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(REQUIRE_ENV, value)
    run.runpytest("--assert=plain", "-p", "tests.servers.fixtures").assert_outcomes(skipped=3)
