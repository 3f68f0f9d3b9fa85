"""Is a secret strong enough for production? A cheap estimate, made to refuse the obvious.

A JWT_SECRET or ENCRYPTION_KEY typed by a person (``aaaa...``, ``0123...``, a keyboard
row, a short pattern repeated) passes a length check but not these:

- the estimated entropy (Shannon, per character, times the length) is at least 128 bits;
- at least 10 distinct characters;
- under 40 % of adjacent characters are equal or neighbours (``aa``, ``ab``, ``21``);
- it is not (mostly) a shorter string repeated: no shift p with 80 % of s[i] == s[i+p];
- a Fernet key (32 bytes, base64) has at least 16 distinct bytes (random keys have ~30).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from collections import Counter

MIN_LENGTH = 32
MIN_BITS = 128
MIN_DISTINCT = 10
MAX_STEP_SHARE = 0.4
FERNET_MIN_DISTINCT_BYTES = 16
MAX_PERIOD_MATCH = 0.8


def estimated_bits(value: str) -> float:
    """Shannon entropy of the characters of ``value`` times its length."""
    counts = Counter(value)
    total = len(value)
    per_char = -sum(n / total * math.log2(n / total) for n in counts.values())
    return per_char * total


def _fernet_bytes(value: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 and len(value) == 44 else None


def _periodic(value: str) -> bool:
    n = len(value)
    for shift in range(1, n // 2 + 1):
        same = sum(value[i] == value[i + shift] for i in range(n - shift))
        if same >= MAX_PERIOD_MATCH * (n - shift):
            return True
    return False


def weakness(value: str) -> str | None:
    """Why ``value`` is too weak for a production secret, or None if it is not."""
    value = value.strip()
    key = _fernet_bytes(value)
    if key is not None:
        distinct = len(set(key))
        return None if distinct >= FERNET_MIN_DISTINCT_BYTES else "a Fernet key of repeated bytes"
    if len(value) < MIN_LENGTH:
        return f"under {MIN_LENGTH} characters"
    if len(set(value)) < MIN_DISTINCT:
        return f"fewer than {MIN_DISTINCT} distinct characters"
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in itertools.pairwise(value))
    if steps / (len(value) - 1) >= MAX_STEP_SHARE:
        return "runs of repeated or consecutive characters"
    if _periodic(value):
        return "a repeated pattern"
    if estimated_bits(value) < MIN_BITS:
        return f"estimated entropy under {MIN_BITS} bits"
    return None
