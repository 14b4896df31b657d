"""One load per table at a time, across processes and machines: claims on the load ledger.

Within one command the files of a table are loaded one after the other. Two commands loading
the same table at once (the same file from two terminals, a cron run overlapping a manual one)
would fight over every key: each batch of one waits for the other's uncommitted rows, fails on
them, and retries in the exclusive lane, and both crawl (a 245k-row file took 518 s instead of
5, and the second gave up blaming "a merge"). So a load claims its table: it writes who it is
(a token, its process id, its host) on its file's 'loading' row of ``syncpipe.load_files``,
and every batch it commits renews the claim's heartbeat. Another load of the table waits for
the claim to go, up to SYNCPIPE_LOCK_TIMEOUT, then gives up naming its holder (exit 3).

A claim whose load has stopped does not block anyone: it was given up (a failed or
interrupted load releases it); on the same machine (host, boot and process namespace), its
holder's process is gone; from another machine, nothing was committed under it for longer
than its holder allows itself (2 minutes plus twice its lock timeout) and no batch of it is
still open on the server (a frozen client's open batch would hold the new load's rows up). A
dry run holds its table the same way, by a 'checking' row deleted when it ends (one left by a
dry run that was killed goes when the next load finds its claim stopped): a load begun
meanwhile waits for it (each tried every key of the other's rows, and the load ran 2.5 times
slower), and a dry run waits for a running load (its answer would depend on how far that load
got). A claim is read and taken under a transaction-scoped advisory lock (a
transaction-mode pooler keeps it with the work), and a load whose claim was taken over stops
at its next batch.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.services.load import ledger
from syncpipe.services.load.ledger import Claim, Holder

#: A load that commits no batch for this long, plus twice its lock timeout (the longest a
#: batch waits for rows another session holds), counts as stopped, unless its process is seen
#: alive on this machine or a batch of it is still open on the server.
SILENT_S = 120.0

#: Said instead of a claim when another session is taking or giving one up at this moment.
CLAIMING = "another syncpipe load is claiming it at this moment"

#: This process's token: the load threads of one command share it; a forked child (a worker
#: of a prefork pool) makes its own.
_TOKEN = uuid.uuid4().hex


def _new_token() -> None:
    global _TOKEN
    _TOKEN = uuid.uuid4().hex


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_token)


def this_load(lock_timeout: float) -> Holder:
    """This process as a claim's holder, with the lock timeout it runs with."""
    pid = os.getpid()
    return Holder(
        _TOKEN, pid, socket.gethostname(), _place(), SILENT_S + 2 * lock_timeout, _started(pid)
    )


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (its state first); [] where there
    is no such file."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (None where unknown)."""
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


@functools.cache
def _place() -> str:
    """Where this process's id names this process: the host, its boot, the process
    namespace (two containers on one host may both have a process 7)."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return "|".join(parts)


def _alive(holder: Holder) -> bool:
    """True while the holder's process runs on this machine: not a zombie (killed and not yet
    reaped by its parent), nor another process given its id since."""
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (alive, another user's)
        pass
    if _stat(holder.pid)[:1] in (["Z"], ["X"]):
        return False
    return holder.pid_start is None or _started(holder.pid) in (None, holder.pid_start)


def stopped(claim: Claim, me: Holder, batches_open: Callable[[], bool]) -> bool:
    """True when the load holding ``claim`` is known to have stopped: on this machine, its
    process is gone; elsewhere, it has been silent for longer than it allows itself, and no
    batch of it is open on the server."""
    other = claim.holder
    if other.place == me.place and os.name == "posix":
        # (the same id and another token: an earlier process that had this id)
        return other.pid == me.pid or not _alive(other)
    return claim.quiet_s > other.silent_s and not batches_open()


def take(conn: psycopg.Connection[Any], table: str, me: Holder) -> Claim | str | None:
    """Lock the table's claims for this transaction and say who holds it: the claim of a
    running load of the table (nothing may be loaded into it yet), CLAIMING, or None (this
    load may take it)."""
    if not ledger.lock_claims(conn, table):
        return CLAIMING
    stale: list[int] = []
    for claim in ledger.claims_on(conn, table, me.token):
        if not stopped(claim, me, lambda: ledger.batches_open(conn, table)):
            return claim
        stale.append(claim.file_id)
    ledger.forget_checks(conn, stale)
    return None


def doing(claim: Claim | str) -> str:
    """What the holder of a claim is doing to the table, in words."""
    if isinstance(claim, Claim) and claim.checking:
        return "checked by another syncpipe load's dry run"
    return "loaded by another syncpipe load"


def describe(claim: Claim | str) -> str:
    """The other load, as a sentence names it."""
    if isinstance(claim, str):
        return claim
    since = claim.since.astimezone(UTC).strftime("%H:%M:%S UTC")
    return (
        f"{claim.file_name}, pid {claim.holder.pid} on {claim.holder.host}, since {since}, "
        f"last heard from {claim.quiet_s:.0f} s ago"
    )
