"""Transaction-scoped advisory locks, polled, never waited on, naming their holder on timeout.

syncpipe keeps no session state, so that every command works through a transaction-mode
pooler (PgBouncer, Supavisor), where consecutive transactions of one client may run on
different server connections: a session lock would stay on one of them while the work ran on
another. A lock here belongs to the transaction that takes it and goes with its COMMIT or
ROLLBACK. It is polled with ``pg_try_advisory_xact_lock`` and a backoff, up to the lock
timeout (a blocking ``pg_advisory_xact_lock`` cannot be given up on, and can deadlock with
concurrent index builds). Taking a lock the transaction already holds succeeds at once, so the
SQL functions that take the same key themselves (the merge's entry points) go on.
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from syncpipe.core.errors import LockTimeoutError
from syncpipe.core.timeouts import postgres_ms

#: First key of every syncpipe advisory lock ("SYNC"), so they are easy to find in pg_locks.
LOCK_NAMESPACE = 0x53594E43

#: The columns of pg_stat_activity (alias a) by which _session() names a session.
_SESSION_COLUMNS = (
    "a.pid, a.usename, a.application_name, a.client_addr::text, a.client_port, "
    "to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'"
)


def lock_timeout_setting(seconds: float) -> str:
    """SYNCPIPE_LOCK_TIMEOUT as a value of PostgreSQL's ``lock_timeout``: at least 1 ms (0 there
    would mean no limit, where syncpipe's 0 means not to wait), at most its largest."""
    return f"{max(postgres_ms(seconds), 1)}ms"


#: Who may hold LockKind.MERGE, as a LockTimeoutError names it.
MERGE_OR_DECISION = "syncpipe merge (or review decision)"


class LockKind(IntEnum):
    """The second key: what the lock protects (the SQL functions use the same numbers)."""

    DEPLOY = 1
    MERGE = 2


def xact_lock(
    conn: psycopg.Connection[Any],
    kind: LockKind,
    *,
    timeout: float,
    what: str,
) -> None:
    """Take lock ``kind`` for the rest of the current transaction; LockTimeoutError after
    ``timeout`` seconds. ``conn`` must be in a transaction (not autocommit)."""
    if conn.autocommit:
        raise ValueError("xact_lock needs a transaction; the connection is in autocommit mode")
    deadline = time.monotonic() + timeout
    delay = 0.05
    cur = conn.cursor(row_factory=tuple_row)
    while True:
        row = cur.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, int(kind))
        ).fetchone()
        if row is not None and row[0]:
            return
        if time.monotonic() >= deadline:
            raise LockTimeoutError(describe_holder(conn, kind, timeout, what))
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)


def describe_holder(
    conn: psycopg.Connection[Any],
    kind: LockKind,
    timeout: float,
    what: str,
) -> str:
    """The LockTimeoutError sentence: who holds lock ``kind`` (as far as the server says)."""
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(
        f"""
        SELECT {_SESSION_COLUMNS}
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted
          AND l.classid = %s AND l.objid = %s AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        (LOCK_NAMESPACE, int(kind)),
    )
    row = cur.fetchone()
    holder = "another session" if row is None else _session(*row)
    return (
        f"Another {what} is running ({holder}); gave up after waiting {timeout:g} s "
        "(setting SYNCPIPE_LOCK_TIMEOUT)."
    )


def describe_row_holders(conn: psycopg.Connection[Any], *tables: str, locking: bool = False) -> str:
    """Who may hold rows of ``tables`` (each by its name, or its schema-qualified SQL name)
    locked: the other sessions whose open transaction has written one, or with ``locking``
    locked rows of one too (``SELECT ... FOR UPDATE``), as far as the server says, for a
    sentence after a row lock's wait timed out; "another session" when none is seen, or the
    server cannot say (the question is asked in a savepoint of the caller's transaction)."""
    modes = ["RowExclusiveLock", "RowShareLock"] if locking else ["RowExclusiveLock"]
    try:
        with conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            cur.execute(
                f"""
                SELECT {_SESSION_COLUMNS}
                FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                JOIN pg_class c ON c.oid = l.relation
                WHERE l.locktype = 'relation' AND l.granted AND l.mode = ANY(%s)
                  AND l.database = (SELECT oid FROM pg_database
                                    WHERE datname = current_database())
                  AND (c.relname = ANY(%s)
                       OR c.oid = ANY(ARRAY(SELECT to_regclass(n) FROM unnest(%s::text[]) n)))
                  AND a.pid <> pg_backend_pid()
                GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 6 LIMIT 3
                """,
                (modes, list(tables), list(tables)),
            )
            holders = [_session(*row) for row in cur.fetchall()]
    except psycopg.Error:
        return "another session"
    return "; or ".join(holders) if holders else "another session"


def _session(
    pid: int, user: str, app: str | None, addr: str | None, port: int | None, since: str | None
) -> str:
    """A server session as a sentence names it (where from, as far as this role may see:
    another user's address and port read NULL to a role without pg_read_all_stats)."""
    text = f"server pid {pid}, user {user}, application {app or '?'}"
    if addr:
        text += f", from {addr}"
    elif port == -1:
        text += ", local socket"
    if since:
        text += f", in a transaction since {since}"
    return text
