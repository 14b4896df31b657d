"""How a server error during a load is read: a refused row, a retry, a refused batch, or a
lost database.

A refused row is judged on the slow path; a lost connection ends the load (exit 3, what was
committed stays); a batch the server refuses for a reason no retry mends (a privilege the role
lacks, a full disk) fails its file at once. The server's message is cut: it may quote the input.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import psycopg
from psycopg import errors as pg_errors

Refusal = Literal["data", "unique", "retry"]

# COPY's context, "COPY t, line 5, column c: ..." in English, "COPY t, Zeile 5, Spalte c: ..."
# in German: the words vary with the server's language (lc_messages), not the places
_COPY_LINE = re.compile(r"COPY [^,]+, [^\d,]*?(\d+)")
_COPY_COLUMN = re.compile(r"COPY [^,]+, [^\d,]*?\d+, \S+ ([^:]+):")
_REASON_CHARS = 160


def is_lost(conn: psycopg.Connection[Any], exc: BaseException) -> bool:
    """True when the error ends the load: the connection is gone or the query was cancelled."""
    if isinstance(exc, pg_errors.QueryCanceled):
        return True
    if not isinstance(exc, psycopg.Error):
        return True
    return (
        conn.closed or conn.broken or exc.sqlstate is None or exc.sqlstate.startswith(("08", "57"))
    )


def refusal(exc: psycopg.Error) -> Refusal:
    """What kind of refusal a server error is."""
    if isinstance(exc, pg_errors.UniqueViolation):
        return "unique"
    if isinstance(
        exc,
        pg_errors.DeadlockDetected | pg_errors.SerializationFailure | pg_errors.LockNotAvailable,
    ):
        return "retry"
    return "data"


def no_rows_fault(conn: psycopg.Connection[Any], exc: psycopg.Error) -> bool:
    """True for an error no row of the batch causes, so none is rejected for it: the database
    lost, a refusal of the batch whole (``lasting``), or a wait that ended or a deadlock (a
    row another transaction holds or is inserting): the batch is tried again."""
    return is_lost(conn, exc) or lasting(exc) or refusal(exc) == "retry"


def refused_by_policy(exc: psycopg.Error) -> bool:
    """True for a row a row level security policy refused (SQLSTATE 42501, as a missing
    privilege is): told apart by the server function that raised it, which is the same in
    every language the server may speak (``lc_messages``), else by its English words."""
    diag = exc.diag
    if diag.source_function == "ExecWithCheckOptions":
        return True
    return (diag.message_primary or "").startswith("new row violates row-level")


def lasting(exc: psycopg.Error) -> bool:
    """True for a refusal that no row causes and no retry mends: a privilege the role lacks,
    a read-only transaction, a table gone, a full disk, the server's own failure. Row level
    security is judged row by row (a policy may take some rows and refuse others), and so is
    an exception a trigger raises (a check of the row, mostly)."""
    state = exc.sqlstate or ""
    if state == "42501":  # insufficient_privilege, and a row refused by row level security
        return not refused_by_policy(exc)
    if state == "55P03":  # lock_not_available: tried again
        return False
    # (55: the table's state, e.g. published for updates without a replica identity)
    return state[:2] in ("25", "42", "53", "55", "58", "XX")


class BatchRefused(Exception):
    """The server refused a batch for a reason no retry mends: its file fails, saying why."""

    def __init__(self, line: int | None, exc: psycopg.Error, role: str) -> None:
        diag = exc.diag
        reason = (diag.message_primary or str(exc).splitlines()[0]).rstrip(".")
        if len(reason) > _REASON_CHARS:
            reason = reason[: _REASON_CHARS - 1] + "…"
        hint = ""
        if diag.sqlstate == "42501":  # insufficient_privilege
            hint = f" (the role {role} lacks a privilege the load needs)"
        what = "the load of the file" if line is None else f"the batch from line {line:,}"
        super().__init__(
            f"the server refused {what}: {reason}{hint} [SQLSTATE {diag.sqlstate}]; the "
            "batches already committed are kept: run the load again to resume once that is "
            "mended"
        )


def copy_record(exc: psycopg.Error) -> int | None:
    """The record number (1-based, in the data sent) PostgreSQL's COPY error names."""
    match = _COPY_LINE.search(exc.diag.context or "")
    return int(match.group(1)) if match else None


def server_reason(exc: psycopg.Error) -> tuple[str, str]:
    """(column, reason) from a server error on a single row, the reason cut short."""
    diag = exc.diag
    column = diag.column_name or ""
    context = diag.context or ""
    if not column and (named := _COPY_COLUMN.search(context)):
        column = named.group(1).strip()
    message = (diag.message_primary or str(exc).splitlines()[0]).rstrip(".")
    if diag.constraint_name and diag.sqlstate == "23514":  # check_violation (in any language)
        message = f"violates {diag.constraint_name}"
    elif diag.sqlstate == "23502" and column:  # not_null_violation (of the table, or the stage)
        message = f"{column} is empty, and the table needs a value"
    elif diag.sqlstate in ("22P02", "22P05") and any(
        word in message.lower() for word in ("json", "unicode")
    ):
        # (a JSON string PostgreSQL cannot hold: a lone surrogate "\ud800", a "\u0000")
        detail = (diag.message_detail or "").rstrip(".")
        message = f"is not JSON PostgreSQL can store ({detail or message})"
    if len(message) > _REASON_CHARS:
        message = message[: _REASON_CHARS - 1] + "…"
    return column[:63], message
