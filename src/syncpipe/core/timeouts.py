"""syncpipe's timeouts (seconds, floats) as PostgreSQL's timeout settings (whole milliseconds,
at most a 32-bit integer's worth)."""

from __future__ import annotations

#: PostgreSQL's largest statement_timeout or lock_timeout, in milliseconds (about 24.8 days).
MAX_TIMEOUT_MS = 2_147_483_647


def postgres_ms(seconds: float) -> int:
    """``seconds`` in whole milliseconds within PostgreSQL's range: 0 stays 0 (PostgreSQL's "no
    limit"), a positive time stays at least 1 ms, and ``inf`` or more than the largest is the
    largest."""
    if seconds <= 0:
        return 0
    return max(1, int(min(seconds * 1000, MAX_TIMEOUT_MS)))
