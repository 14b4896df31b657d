"""One load per table at a time, across processes and machines: claims on the load ledger.

Within one command the files of a table are loaded one after the other. Two commands loading
the same table at once (the same file from two terminals, a cron run overlapping a manual one)
would fight over every key: each batch of one waits for the other's uncommitted rows, fails on
them, and retries in the exclusive lane, and both crawl (a 245k-row file took 518 s instead of
5, and the second gave up blaming "a merge"). So a load claims its table: it writes who it is
(a token, its process id, its host) on its file's 'loading' row of ``syncpipe.load_files``,
and every batch it commits renews the claim's heartbeat. Another load of the table waits for
the claim to go, up to SYNCPIPE_LOCK_TIMEOUT, then gives up naming its holder (exit 3).

A claim whose load has stopped does not block anyone: its holder's process is gone (seen from
the same host, boot and process namespace), it was given up (a failed or interrupted load
releases it), or nothing was committed under it for longer than any batch may take. A claim
is read and taken under a transaction-scoped advisory lock (a transaction-mode pooler keeps
it with the work), and a load whose claim was taken over stops at its next batch.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.services.load import ledger
from syncpipe.services.load.ledger import Claim, Holder

#: A claim silent for this long, plus twice the lock timeout (the longest a batch waits for
#: rows another session holds), belongs to a load that has stopped.
SILENT_S = 120.0


#: This process's token (made once, at import: the load threads of one command share it).
_TOKEN = uuid.uuid4().hex


def this_load() -> Holder:
    """This process as a claim's holder."""
    return Holder(_TOKEN, os.getpid(), socket.gethostname(), _place())


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


def silent_after(lock_timeout: float) -> float:
    """Seconds without a committed batch after which a claim's load counts as stopped."""
    return SILENT_S + 2 * lock_timeout


def stopped(claim: Claim, me: Holder, silent_s: float) -> bool:
    """True when the load holding ``claim`` is known to have stopped."""
    if claim.silent_s > silent_s:
        return True
    other = claim.holder
    if other.place != me.place or os.name != "posix":
        return False
    if other.pid == me.pid:  # (another token: an earlier process that had this id)
        return True
    try:
        os.kill(other.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # (alive, another user's)
        return False
    return False


def take(conn: psycopg.Connection[Any], table: str, me: Holder, silent_s: float) -> Claim | None:
    """Lock the table's claims for this transaction; the claim of a running load of the table,
    if there is one (then nothing may be loaded into it yet)."""
    ledger.lock_claims(conn, table)
    for claim in ledger.claims_on(conn, table, me.token):
        if not stopped(claim, me, silent_s):
            return claim
    return None


def describe(claim: Claim) -> str:
    """The other load, as a sentence names it."""
    since = claim.started_at.astimezone(UTC).strftime("%H:%M:%S UTC")
    return (
        f"{claim.file_name}, pid {claim.holder.pid} on {claim.holder.host}, since {since}, "
        f"last heard from {claim.silent_s:.0f} s ago"
    )
