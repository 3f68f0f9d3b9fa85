"""The test suite.

Its clients poll status endpoints far faster than the service's default 60 requests a
minute per IP allows; rate limits are off unless a test turns them on (tests/ops/ do).
Settings read the environment, so this covers apps built in-process and the servers the
e2e tests start (their environment is a copy of this one).
"""

import os

os.environ.setdefault("RATE_LIMIT_ENABLED", "false")
