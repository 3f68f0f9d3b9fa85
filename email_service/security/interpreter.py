"""Does this Python carry the fixes the service relies on?

- CVE-2024-4032: ``ipaddress`` called some special-purpose ranges global (fixed in 3.12.4,
  3.11.10 and distribution backports). The SSRF guard uses its own table
  (``netguard.SPECIAL_PURPOSE``), so this is defence in depth.
- CVE-2024-6923: the ``email`` package did not quote newlines in headers it wrote (fixed
  in 3.12.5, 3.11.10 and backports, which add ``policy.verify_generated_headers``).

Behaviour is probed rather than the version compared: distributions backport the fixes
without changing the version number (Debian 12's 3.11.2 has both; a self-built 3.11.7
has neither).
"""

from __future__ import annotations

import email.policy
import ipaddress
from collections.abc import Callable


def _ipaddress_unpatched() -> bool:
    return ipaddress.IPv4Address("192.0.0.8").is_global


def problems(
    policy: object = email.policy.default,
    global_probe: Callable[[], bool] = _ipaddress_unpatched,
) -> list[str]:
    """One sentence per missing fix; empty when the interpreter has both."""
    found = []
    if global_probe():
        found.append(
            "CVE-2024-4032: this Python's ipaddress calls 192.0.0.8 global "
            "(fixed in 3.11.10, 3.12.4 and later)"
        )
    if not hasattr(policy, "verify_generated_headers"):
        found.append(
            "CVE-2024-6923: this Python's email package does not check the header lines it "
            "writes (fixed in 3.11.10, 3.12.5 and later)"
        )
    return found
