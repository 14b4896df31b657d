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
    ResourceError,
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
_CONFIG_MARKERS = (
    "invalid connection option",
    "invalid sslmode value",
    "invalid value for",
    "invalid port number",
    "invalid integer value",
)


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


def lost_error(target: str, during: str, outcome: str, reason: str = "") -> ConnectError:
    """The connection to ``target`` went away ``during`` some work; ``outcome`` says what stays
    (``reason``, the driver's, kept apart for a caller that says the loss in its own words)."""
    error = ConnectError(f"The connection to {target} was lost {during}; {outcome}.")
    error.reason = reason
    return error


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


#: SQLSTATE class 53, insufficient resources: the server ran out of something.
_RESOURCE_CLASS = "53"
_DISK_FULL = "53100"
_OUT_OF_MEMORY = "53200"
_TOO_MANY_CONNECTIONS = "53300"
_LIMIT_EXCEEDED = "53400"


def resource_error(
    sqlstate: str | None,
    message: str,
    *,
    job: str,
    phase: str | None,
    outcome: str,
    hint: str | None = None,
    work_mem: str = "work_mem",
) -> ResourceError | None:
    """A server error of SQLSTATE class 53 (disk, memory, temp_file_limit, lock table or
    connections exhausted) as one sentence naming ``job``, the ``phase`` that was running, the
    setting to change and the ``outcome`` ("nothing was changed"); None for any other error.

    ``message`` and ``hint`` are the server's (the merge functions return only the message
    and SQLSTATE of an error they caught); ``work_mem`` names where the job's work_mem is set.
    """
    if not sqlstate or not sqlstate.startswith(_RESOURCE_CLASS):
        return None
    reason = redact(message).strip().splitlines()[0].strip().rstrip(".") if message.strip() else ""
    lowered = f"{message} {hint or ''}".lower()
    if sqlstate == _LIMIT_EXCEEDED and "temp_file_limit" in lowered:
        limit = re.search(r"temp_file_limit\"? \(([^)]+)\)", message)  # quoted since PG 17
        what = "temporary disk space"
        reason = f"temp_file_limit = {limit.group(1) if limit else 'its limit'} reached"
        remedy = "raise temp_file_limit, or free disk space on the server"
    elif sqlstate == _DISK_FULL:
        what = "disk space on the server"
        remedy = "free disk space on the server (or give it a larger disk)"
    elif sqlstate == _OUT_OF_MEMORY and "shared memory" in lowered:
        setting = re.search(r'increase "?(max_\w+)', hint or "")
        what = "shared memory for locks"
        remedy = (
            f"raise {setting.group(1) if setting else 'max_locks_per_transaction'} on the "
            "server (it takes a restart)"
        )
    elif sqlstate == _OUT_OF_MEMORY:
        what = "server memory"
        remedy = f"lower {work_mem}, or give the server more memory"
    elif sqlstate == _TOO_MANY_CONNECTIONS:
        what = "connections"
        remedy = "raise max_connections on the server, or lower SYNCPIPE_POOL_MAX_SIZE"
    elif sqlstate == _LIMIT_EXCEEDED:
        what = "a configured server limit"
        remedy = "raise the server setting the message names"
    else:
        what = "server resources"
        remedy = "free resources on the server"
    where = f' in phase "{phase}"' if phase else ""
    because = f" ({reason})" if reason else ""
    return ResourceError(
        f"{job} ran out of {what}{where}{because}: {remedy}, and run it again; {outcome}."
    )


def resource_error_of(
    exc: BaseException, *, job: str, phase: str | None, outcome: str, work_mem: str = "work_mem"
) -> ResourceError | None:
    """:func:`resource_error` for a driver exception (its SQLSTATE, message and hint)."""
    diag = getattr(exc, "diag", None)
    return resource_error(
        getattr(exc, "sqlstate", None),
        getattr(diag, "message_primary", None) or first_line(exc),
        job=job,
        phase=phase,
        outcome=outcome,
        hint=getattr(diag, "message_hint", None),
        work_mem=work_mem,
    )


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
        # (deadlock, serialization failure: class 40, OperationalErrors to the driver, but the
        # connection is still there)
        if str(getattr(exc, "sqlstate", None) or "").startswith("40"):
            return EXIT_UNAVAILABLE, (
                f"The command's transaction was rolled back to let another session go on "
                f"({first_line(exc)}): each was waiting for rows the other had changed. "
                "Run it again."
            )
        if isinstance(exc, PoolTimeout):
            return EXIT_UNAVAILABLE, "No database connection became available in time."
        # (class 53 is an OperationalError to the driver, but the connection is still there)
        resource = resource_error_of(
            exc, job="The command", phase=None, outcome="its open transaction was rolled back"
        )
        if resource is not None:
            return resource.exit_code, str(resource)
        sqlstate = str(getattr(exc, "sqlstate", None) or "")
        # (a server error of another class that the driver calls operational, class 54 or 58
        # say, left the connection as it was: it is said as any other database error)
        lost = not sqlstate or sqlstate.startswith(("08", "57P")) or is_connection_lost(exc)
        if isinstance(exc, psycopg.OperationalError) and lost:
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
