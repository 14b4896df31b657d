"""The load ledger: which files were loaded, how far a file got, and its rejected rows.

Tables (created by ``syncpipe.db.ledger.ensure_ledger`` at deploy): ``syncpipe.load_files`` (a
file, 'loading' until its last batch commits), ``syncpipe.load_batches`` (each committed batch:
byte range, counts, transaction ids), ``syncpipe.load_rejects`` (each rejected row) and
``syncpipe.load_seen`` (keys a reload left unchanged, to find a key repeated later in the file).
A batch's row, its rejects and its table rows commit in one transaction. A 'loading' row also
names the load that holds its table's claim (``claim.py``), renewed by every batch it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.services.load.records import Reject

#: First key of the advisory lock every batch's transaction takes on its table ("SYND"; with
#: ``hashtext(table)``): shared for the parallel COPY lane, exclusive for the one-at-a-time lane.
BATCH_NAMESPACE = 0x53594E44
#: First key of the advisory lock under which claims on a table are taken one at a time
#: ("SYNE").
CLAIM_NAMESPACE = 0x53594E45


@dataclass(frozen=True)
class LoadedFile:
    """A file the ledger says was loaded completely."""

    id: int
    status: str
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    finished_at: datetime
    reject_file: str | None
    rejects_accepted: bool


@dataclass(frozen=True)
class DoneBatch:
    """A committed batch of a file being loaded."""

    seq: int
    start: int
    end: int
    first_line: int
    lines: int
    xids: tuple[str, ...]


def _done(row: tuple[Any, ...]) -> DoneBatch:
    seq, start, end, first_line, lines, xids = row
    return DoneBatch(int(seq), int(start), int(end), int(first_line), int(lines), tuple(xids))


@dataclass
class BatchRow:
    """What one batch did, written with it."""

    seq: int
    start: int
    end: int
    first_line: int
    lines: int
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def same_size_loaded(conn: psycopg.Connection[Any], table: str, size: int) -> bool:
    """True when a completed load of a file of this size into ``table`` exists."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM syncpipe.load_files WHERE table_name = %s "
        "AND size_bytes = %s AND status IN ('loaded', 'loaded_with_rejects'))",
        (table, size),
    ).fetchone()
    return bool(row and row[0])


def find_loaded(
    conn: psycopg.Connection[Any], table: str, sha256: str, encoding: str
) -> LoadedFile | None:
    """The latest completed load of this content into ``table``."""
    row = conn.execute(
        """
        SELECT id, status, rows_read, inserted, updated, unchanged, rejected, finished_at,
               reject_file, rejects_accepted_at IS NOT NULL
        FROM syncpipe.load_files
        WHERE table_name = %s AND sha256 = %s AND encoding = %s
          AND status IN ('loaded', 'loaded_with_rejects')
        ORDER BY id DESC LIMIT 1
        """,
        (table, sha256, encoding),
    ).fetchone()
    return None if row is None else LoadedFile(*row)


def find_loading(
    conn: psycopg.Connection[Any], table: str, path: Path, size: int, mtime_ns: int, encoding: str
) -> int | None:
    """The unfinished load of this very file (same path, size and mtime), if any; unfinished
    loads of an older version of it are forgotten."""
    rows = conn.execute(
        """
        SELECT id, size_bytes = %s AND mtime_ns = %s AND encoding = %s
        FROM syncpipe.load_files
        WHERE table_name = %s AND file_path = %s AND status = 'loading'
        ORDER BY id DESC
        """,
        (size, mtime_ns, encoding, table, str(path)),
    ).fetchall()
    keep = next((int(r[0]) for r in rows if r[1]), None)
    forget(conn, [int(r[0]) for r in rows if int(r[0]) != keep])
    return keep


def forget(conn: psycopg.Connection[Any], file_ids: list[int]) -> None:
    """Delete files' ledger rows (their batches and rejects go with them) and the keys they
    left unchanged."""
    if file_ids:
        conn.execute("DELETE FROM syncpipe.load_seen WHERE file_id = ANY(%s)", (file_ids,))
        conn.execute("DELETE FROM syncpipe.load_files WHERE id = ANY(%s)", (file_ids,))


def start_file(
    conn: psycopg.Connection[Any],
    *,
    path: Path,
    table: str,
    size: int,
    mtime_ns: int,
    body_offset: int,
    env: str,
    encoding: str,
    started: datetime,
    holder: Holder,
    status: str = "loading",
) -> int:
    """A new 'loading' row for the file, held by ``holder``; its id. (A dry run's row is
    'checking': it holds the table while the dry run reads the file, and goes when it ends.)"""
    row = conn.execute(
        """
        INSERT INTO syncpipe.load_files (file_name, file_path, table_name, size_bytes, mtime_ns,
            body_offset, started_at, finished_at, duration_ms, status, env, encoding,
            holder_token, holder_pid, holder_host, holder_place, holder_silent_s,
            holder_pid_start, heartbeat_at, holder_since)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                clock_timestamp(), clock_timestamp())
        RETURNING id
        """,
        (
            path.name,
            str(path),
            table,
            size,
            mtime_ns,
            body_offset,
            started,
            started,
            status,
            env,
            encoding,
            *holder.columns(),
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: a load's token, its process id, host, the place where that process
    id means that process (host, boot, process namespace), and how long it may go without
    committing a batch before it counts as stopped (its own lock timeout decides)."""

    token: str
    pid: int
    host: str
    place: str
    silent_s: float
    pid_start: int | None = None  # (clock ticks since boot: a reused process id is not it)

    def columns(self) -> tuple[str, int, str, str, float, int | None]:
        """holder_token, holder_pid, holder_host, holder_place, holder_silent_s and
        holder_pid_start, in that order."""
        return (self.token, self.pid, self.host, self.place, self.silent_s, self.pid_start)


@dataclass(frozen=True)
class Claim:
    """Another load's claim on a table: its file's 'loading' row and who holds it."""

    file_id: int
    file_name: str
    holder: Holder
    since: datetime  # when it took the claim
    quiet_s: float  # since its last committed batch (or since it took the claim)
    checking: bool = False  # a dry run's claim ('checking' row)


def lock_claims(conn: psycopg.Connection[Any], table: str) -> bool:
    """Claims on ``table`` are read and taken one session at a time, for the rest of the
    transaction (a short one: it only reads and writes ledger rows); False when another
    session is taking one right now (then try again)."""
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (CLAIM_NAMESPACE, table)
    ).fetchone()
    return bool(row and row[0])


def batches_open(conn: psycopg.Connection[Any], table: str) -> bool:
    """True when a transaction writing a batch into ``table`` is open on the server (a load
    whose client froze mid-batch, say); if none is, none can begin before this transaction
    ends."""
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (BATCH_NAMESPACE, table)
    ).fetchone()
    return not (row and row[0])


def claims_on(conn: psycopg.Connection[Any], table: str, token: str) -> list[Claim]:
    """The claims other loads hold on ``table``, oldest first."""
    rows = conn.execute(
        """
        SELECT id, file_name, holder_token, holder_pid, holder_host, holder_place,
               holder_silent_s, holder_pid_start, coalesce(holder_since, started_at),
               extract(epoch FROM clock_timestamp() - coalesce(heartbeat_at, started_at)),
               status = 'checking'
        FROM syncpipe.load_files
        WHERE table_name = %s AND status IN ('loading', 'checking')
          AND holder_token IS NOT NULL AND holder_token <> %s
        ORDER BY id
        """,
        (table, token),
    ).fetchall()
    return [
        Claim(
            int(r[0]),
            str(r[1]),
            Holder(
                str(r[2]),
                int(r[3] or 0),
                str(r[4] or "?"),
                str(r[5] or ""),
                float(r[6] or 0),
                None if r[7] is None else int(r[7]),
            ),
            r[8],
            float(r[9]),
            bool(r[10]),
        )
        for r in rows
    ]


def hold(conn: psycopg.Connection[Any], file_id: int, holder: Holder) -> None:
    """Take the claim of a file's 'loading' row (resuming it)."""
    conn.execute(
        "UPDATE syncpipe.load_files SET holder_token = %s, holder_pid = %s, holder_host = %s, "
        "holder_place = %s, holder_silent_s = %s, holder_pid_start = %s, "
        "heartbeat_at = clock_timestamp(), holder_since = clock_timestamp() WHERE id = %s",
        (*holder.columns(), file_id),
    )


def release(conn: psycopg.Connection[Any], file_id: int, token: str) -> None:
    """Give up the claim (the load stopped; its row stays, to be resumed; a dry run's row
    goes)."""
    conn.execute(
        "WITH gone AS (DELETE FROM syncpipe.load_files "
        "              WHERE id = %s AND holder_token = %s AND status = 'checking') "
        "UPDATE syncpipe.load_files SET holder_token = NULL "
        "WHERE id = %s AND holder_token = %s AND status = 'loading'",
        (file_id, token, file_id, token),
    )


def forget_checks(conn: psycopg.Connection[Any], file_ids: list[int]) -> None:
    """Delete the rows of dry runs that stopped without deleting them (killed, or their
    database lost); their claims block no one already."""
    if file_ids:
        conn.execute(
            "DELETE FROM syncpipe.load_files WHERE id = ANY(%s) AND status = 'checking'",
            (file_ids,),
        )


def done_batches(conn: psycopg.Connection[Any], file_id: int) -> list[DoneBatch]:
    """The committed batches of a file, in file order."""
    rows = conn.execute(
        "SELECT seq, start_offset, end_offset, first_line, lines, xids::text[] "
        "FROM syncpipe.load_batches WHERE file_id = %s ORDER BY start_offset",
        (file_id,),
    ).fetchall()
    return [_done(r) for r in rows]


def batches_of_xids(
    conn: psycopg.Connection[Any], file_id: int, xids: list[str]
) -> dict[str, DoneBatch]:
    """The committed batches of the file whose rows carry these transaction ids, by id."""
    if not xids:
        return {}
    rows = conn.execute(
        "SELECT x::text, seq, start_offset, end_offset, first_line, lines, xids::text[] "
        "FROM syncpipe.load_batches, unnest(xids) x "
        "WHERE file_id = %s AND x = ANY(%s::xid[])",
        (file_id, xids),
    ).fetchall()
    return {str(r[0]): _done(r[1:]) for r in rows}


def commit_batch(
    conn: psycopg.Connection[Any],
    file_id: int,
    token: str,
    batch: BatchRow,
    rejects: list[Reject],
    xids: set[str],
    own_xid: bool = False,
) -> bool:
    """Record a batch, its rejects and its transaction ids (in the batch's transaction; with
    ``own_xid``, this transaction's id too), and renew the claim's heartbeat. False, with
    nothing recorded, when the claim is no longer this load's (another load took it over)."""
    own = "|| pg_current_xact_id_if_assigned()::xid" if own_xid else ""
    cur = conn.execute(
        f"""
        WITH beat AS (
            UPDATE syncpipe.load_files SET heartbeat_at = clock_timestamp()
            WHERE id = %s AND holder_token = %s
            RETURNING id
        )
        INSERT INTO syncpipe.load_batches (file_id, seq, start_offset, end_offset, first_line,
            lines, rows_read, inserted, updated, unchanged, rejected, xids)
        SELECT beat.id, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
               array_remove(%s::xid[] {own}, NULL)
        FROM beat
        """,
        (
            file_id,
            token,
            batch.seq,
            batch.start,
            batch.end,
            batch.first_line,
            batch.lines,
            batch.rows_read,
            batch.inserted,
            batch.updated,
            batch.unchanged,
            len(rejects),
            sorted(xids),
        ),
    )
    if cur.rowcount != 1:
        return False
    if rejects:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY syncpipe.load_rejects (file_id, line, column_name, reason, value, raw) "
                "FROM STDIN"
            ) as copy,
        ):
            for r in rejects:
                raw = r.raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
                copy.write_row(
                    (file_id, r.line, r.column, r.reason, r.value, raw.replace("\x00", "\\x00"))
                )
    return True


@dataclass(frozen=True)
class Totals:
    """A file's counts, summed over its batches."""

    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int


def committed(conn: psycopg.Connection[Any], file_id: int) -> Totals:
    """A file's counts over the batches committed so far (a file that failed part way)."""
    row = conn.execute(
        """
        SELECT coalesce(sum(rows_read), 0), coalesce(sum(inserted), 0),
               coalesce(sum(updated), 0), coalesce(sum(unchanged), 0),
               coalesce(sum(rejected), 0)
        FROM syncpipe.load_batches WHERE file_id = %s
        """,
        (file_id,),
    ).fetchone()
    assert row is not None
    return Totals(*(int(v) for v in row))


def finish_file(
    conn: psycopg.Connection[Any],
    file_id: int,
    *,
    sha256: str,
    duration_ms: int,
    reject_file: str | None,
    accept_rejects: bool,
) -> Totals:
    """Mark the file loaded (with rejects or not); its totals over all its batches."""
    row = conn.execute(
        """
        UPDATE syncpipe.load_files f
        SET sha256 = %s, finished_at = clock_timestamp(), duration_ms = %s,
            rows_read = b.rows_read, inserted = b.inserted, updated = b.updated,
            unchanged = b.unchanged, rejected = b.rejected,
            status = CASE WHEN b.rejected > 0 THEN 'loaded_with_rejects' ELSE 'loaded' END,
            holder_token = NULL,
            reject_file = CASE WHEN b.rejected > 0 THEN %s END,
            rejects_accepted_at = CASE WHEN %s AND b.rejected > 0 THEN clock_timestamp() END
        FROM (
            SELECT coalesce(sum(rows_read), 0) AS rows_read, coalesce(sum(inserted), 0) AS inserted,
                   coalesce(sum(updated), 0) AS updated, coalesce(sum(unchanged), 0) AS unchanged,
                   coalesce(sum(rejected), 0) AS rejected
            FROM syncpipe.load_batches WHERE file_id = %s
        ) b
        WHERE f.id = %s
        RETURNING f.rows_read, f.inserted, f.updated, f.unchanged, f.rejected
        """,
        (sha256, duration_ms, reject_file, accept_rejects, file_id, file_id),
    ).fetchone()
    assert row is not None
    conn.execute("DELETE FROM syncpipe.load_seen WHERE file_id = %s", (file_id,))
    return Totals(*(int(v) for v in row))


def accept_rejects(conn: psycopg.Connection[Any], file_id: int) -> None:
    """Record that a person accepted the file's rejected rows."""
    conn.execute(
        "UPDATE syncpipe.load_files SET rejects_accepted_at = clock_timestamp() WHERE id = %s",
        (file_id,),
    )


def rejects_of(conn: psycopg.Connection[Any], file_id: int) -> list[tuple[int, str, str, str, str]]:
    """(line, column, value, reason, raw) of every rejected row of a file, by line."""
    rows = conn.execute(
        "SELECT line, column_name, value, reason, raw FROM syncpipe.load_rejects "
        "WHERE file_id = %s ORDER BY line",
        (file_id,),
    ).fetchall()
    return [(int(a), str(b), str(c), str(d), str(e)) for a, b, c, d, e in rows]


def batch_at(conn: psycopg.Connection[Any], file_id: int, start: int) -> DoneBatch | None:
    """The committed batch of the file that starts at this byte offset."""
    row = conn.execute(
        "SELECT seq, start_offset, end_offset, first_line, lines, xids::text[] "
        "FROM syncpipe.load_batches WHERE file_id = %s AND start_offset = %s",
        (file_id, start),
    ).fetchone()
    return None if row is None else _done(row)


@dataclass(frozen=True)
class FileSeen:
    """How the ledger saw a file when it loaded it (to read it again only if unchanged)."""

    size: int
    mtime_ns: int | None
    encoding: str


def file_seen(conn: psycopg.Connection[Any], file_id: int) -> FileSeen | None:
    """Size, modification time and encoding of a loaded file."""
    row = conn.execute(
        "SELECT size_bytes, mtime_ns, encoding FROM syncpipe.load_files WHERE id = %s",
        (file_id,),
    ).fetchone()
    if row is None:
        return None
    return FileSeen(int(row[0]), None if row[1] is None else int(row[1]), str(row[2]))


def batches_at(
    conn: psycopg.Connection[Any], file_id: int, starts: list[int]
) -> list[tuple[int, int, int]]:
    """(start, end, first line) of the file's batches that start at these offsets."""
    rows = conn.execute(
        "SELECT start_offset, end_offset, first_line FROM syncpipe.load_batches "
        "WHERE file_id = %s AND start_offset = ANY(%s) ORDER BY start_offset",
        (file_id, starts),
    ).fetchall()
    return [(int(a), int(b), int(c)) for a, b, c in rows]


def rejected_lines(conn: psycopg.Connection[Any], file_id: int, first: int, last: int) -> set[int]:
    """The lines from ``first`` to ``last`` the file's committed batches rejected."""
    rows = conn.execute(
        "SELECT DISTINCT line FROM syncpipe.load_rejects "
        "WHERE file_id = %s AND line BETWEEN %s AND %s",
        (file_id, first, last),
    ).fetchall()
    return {int(r[0]) for r in rows}
