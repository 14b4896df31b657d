"""The one place where database driver errors become syncpipe's errors and sentences.

Connection failures name host, port and user, never the password; a connection lost in the
middle of work says what was kept; anything else the CLI did not expect is classified here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from syncpipe.core.errors import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ConfigError,
    ConnectError,
    SyncpipeError,
)
from syncpipe.core.redact import redact

_LOST_MARKERS = (
    "server closed the connection",
    "connection is lost",
    "terminating connection",
    "consuming input failed",
    "connection is closed",
    "ssl syscall",
    "eof detected",
)
#: libpq refuses these before it talks to any server: the configuration is wrong, not the network.
_CONFIG_MARKERS = ("invalid connection option", "invalid sslmode value", "invalid value for")


@dataclass(frozen=True)
class Where:
    """What a connection error names: the target (``host:port/db``), user and timeout."""

    target: str
    user: str
    host: str = ""
    dbname: str = ""
    connect_timeout: float = 10.0


def first_line(exc: BaseException) -> str:
    """The first meaningful line of a driver error, redacted and without a trailing period."""
    text = redact(str(exc)).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if "failed:" in line:
            return line.split("failed:", 1)[1].strip().rstrip(".")
    return (lines[0] if lines else type(exc).__name__).rstrip(".")


def is_connection_lost(exc: BaseException) -> bool:
    """True when the error says the server connection went away mid-work."""
    text = str(exc).lower()
    return any(marker in text for marker in _LOST_MARKERS)


def connect_error(exc: BaseException, where: Where) -> SyncpipeError:
    """A failed connection attempt: ConfigError (exit 2) for a bad option, else ConnectError."""
    text = redact(str(exc))
    lowered = text.lower()
    reason = first_line(exc)
    if any(marker in lowered for marker in _CONFIG_MARKERS):
        return ConfigError(
            f"The connection settings for {where.target} are invalid: {reason} "
            "(check SYNCPIPE_DATABASE_URL and SYNCPIPE_SSLMODE)."
        )
    if "password authentication failed" in lowered:
        reason = f'password authentication failed for user "{where.user}"'
    elif "does not exist" in lowered and "database" in lowered:
        match = re.search(r'database "([^"]+)" does not exist', text)
        reason = f'the database "{match.group(1) if match else where.dbname}" does not exist'
    elif "role" in lowered and "does not exist" in lowered:
        reason = f'the role "{where.user}" does not exist'
    elif "connection refused" in lowered:
        reason = "connection refused (is the server running and accepting TCP/IP connections?)"
    elif "timeout expired" in lowered or "timed out" in lowered:
        reason = f"no answer within {where.connect_timeout:g} s"
    elif "could not translate host name" in lowered or "name or service not known" in lowered:
        reason = f'the host name "{where.host}" could not be resolved'
    elif "no pg_hba.conf entry" in lowered:
        reason = "the server's pg_hba.conf does not allow this connection"
    elif "ssl" in lowered:
        reason = f"SSL negotiation failed ({reason})"
    return ConnectError(
        f"Cannot connect to PostgreSQL at {where.target} as {where.user}: {reason}."
    )


def lost_error(target: str, during: str, outcome: str) -> ConnectError:
    """The connection to ``target`` went away ``during`` some work; ``outcome`` says what stays."""
    return ConnectError(f"The connection to {target} was lost {during}; {outcome}.")


def statement_error(exc: BaseException) -> str:
    """A failed statement as one line: message, detail, hint and SQLSTATE."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    message = (primary or first_line(exc)).rstrip(".")
    detail = getattr(diag, "message_detail", None)
    hint = getattr(diag, "message_hint", None)
    if detail:
        message += f" ({detail.rstrip('.')})"
    if hint:
        message += f"; hint: {hint.rstrip('.')}"
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        message += f" [SQLSTATE {sqlstate}]"
    return redact(message)


def classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and sentence for an exception no service translated (the CLI's last resort)."""
    try:
        import psycopg
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None:
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return EXIT_FAILED, (
                f"A statement was canceled ({first_line(exc)}); if it was the statement "
                "timeout, raise SYNCPIPE_STATEMENT_TIMEOUT."
            )
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return EXIT_UNAVAILABLE, (
                f"A lock was not had in time ({first_line(exc)}); another session holds it. "
                "Try again, or raise SYNCPIPE_LOCK_TIMEOUT."
            )
        if isinstance(exc, PoolTimeout):
            return EXIT_UNAVAILABLE, "No database connection became available in time."
        if isinstance(exc, psycopg.OperationalError):
            text = str(exc).lower()
            if any(marker in text for marker in _CONFIG_MARKERS):
                return EXIT_USAGE, f"The connection settings are invalid: {first_line(exc)}."
            return EXIT_UNAVAILABLE, f"Lost the database connection: {first_line(exc)}."
        if isinstance(exc, psycopg.Error):
            return EXIT_FAILED, f"Database error: {statement_error(exc)}."
    return EXIT_FAILED, (
        f"Unexpected error: {type(exc).__name__}: {redact(str(exc))} "
        "(run with --verbose for the traceback)"
    )
