"""Session advisory locks that are polled, never waited on, and name their holder on timeout.

A blocking ``pg_advisory_lock`` can deadlock with concurrent index builds, so the lock is taken
with ``pg_try_advisory_lock`` in a loop with backoff, in autocommit mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from syncpipe.core.errors import LockTimeoutError

#: First key of every syncpipe advisory lock ("SYNC"), so they are easy to find in pg_locks.
LOCK_NAMESPACE = 0x53594E43


class LockKind(IntEnum):
    """The second key: what the lock protects."""

    DEPLOY = 1
    MERGE = 2
    LOAD = 3


@contextmanager
def advisory_lock(
    conn: psycopg.Connection[Any],
    kind: LockKind,
    *,
    timeout: float,
    what: str,
) -> Iterator[None]:
    """Hold the session lock ``kind`` for the block; LockTimeoutError after ``timeout`` seconds."""
    was_autocommit = conn.autocommit
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    delay = 0.05
    try:
        while True:
            cur = conn.cursor(row_factory=tuple_row)
            row = cur.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, int(kind))
            ).fetchone()
            if row is not None and row[0]:
                break
            if time.monotonic() >= deadline:
                raise LockTimeoutError(_describe_holder(conn, kind, timeout, what))
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
        try:
            yield
        finally:
            if not conn.closed and not conn.broken:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                conn.autocommit = True
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, int(kind)))
    finally:
        if not conn.closed and not conn.broken:
            conn.autocommit = was_autocommit


def _describe_holder(
    conn: psycopg.Connection[Any],
    kind: LockKind,
    timeout: float,
    what: str,
) -> str:
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(
        """
        SELECT a.pid, a.usename, a.application_name, a.client_addr::text,
               to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.classid = %s AND l.objid = %s AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        (LOCK_NAMESPACE, int(kind)),
    )
    row = cur.fetchone()
    if row is None:
        holder = "another session"
    else:
        pid, user, app, addr, since = row
        holder = f"pid {pid}, user {user}, application {app or '?'}"
        holder += f", from {addr}" if addr else ", local socket"
        holder += f", connected since {since}"
    return (
        f"Another {what} is running ({holder}); gave up after waiting {timeout:g} s "
        "(setting SYNCPIPE_LOCK_TIMEOUT)."
    )
