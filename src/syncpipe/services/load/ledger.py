"""The load ledger: which files were loaded, how far a file got, and its rejected rows.

Tables (created by ``syncpipe.db.ledger.ensure_ledger`` at deploy): ``syncpipe.load_files`` (a
file, 'loading' until its last batch commits), ``syncpipe.load_batches`` (each committed batch:
byte range, counts, transaction ids), ``syncpipe.load_rejects`` (each rejected row) and
``syncpipe.load_seen`` (keys a reload left unchanged, to find a key repeated later in the file).
A batch's row, its rejects and its table rows commit in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.services.load.records import Reject


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
        "AND size_bytes = %s AND status <> 'loading')",
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
        WHERE table_name = %s AND sha256 = %s AND encoding = %s AND status <> 'loading'
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
    stale = [int(r[0]) for r in rows if int(r[0]) != keep]
    if stale:
        conn.execute("DELETE FROM syncpipe.load_files WHERE id = ANY(%s)", (stale,))
    return keep


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
) -> int:
    """A new 'loading' row for the file; its id."""
    row = conn.execute(
        """
        INSERT INTO syncpipe.load_files (file_name, file_path, table_name, size_bytes, mtime_ns,
            body_offset, started_at, finished_at, duration_ms, status, env, encoding)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 'loading', %s, %s)
        RETURNING id
        """,
        (path.name, str(path), table, size, mtime_ns, body_offset, started, started, env, encoding),
    ).fetchone()
    assert row is not None
    return int(row[0])


def done_batches(conn: psycopg.Connection[Any], file_id: int) -> list[DoneBatch]:
    """The committed batches of a file, in file order."""
    rows = conn.execute(
        "SELECT seq, start_offset, end_offset, first_line, lines, xids::text[] "
        "FROM syncpipe.load_batches WHERE file_id = %s ORDER BY start_offset",
        (file_id,),
    ).fetchall()
    return [_done(r) for r in rows]


def batch_of_xid(conn: psycopg.Connection[Any], file_id: int, xid: str) -> DoneBatch | None:
    """The committed batch of the file whose rows carry this transaction id."""
    row = conn.execute(
        "SELECT seq, start_offset, end_offset, first_line, lines, xids::text[] "
        "FROM syncpipe.load_batches WHERE file_id = %s AND %s::xid = ANY(xids) LIMIT 1",
        (file_id, xid),
    ).fetchone()
    return None if row is None else _done(row)


def commit_batch(
    conn: psycopg.Connection[Any],
    file_id: int,
    batch: BatchRow,
    rejects: list[Reject],
    xids: set[str],
    own_xid: bool = False,
) -> None:
    """Record a batch, its rejects and its transaction ids (in the batch's transaction; with
    ``own_xid``, this transaction's id too)."""
    own = "|| pg_current_xact_id_if_assigned()::xid" if own_xid else ""
    conn.execute(
        f"""
        INSERT INTO syncpipe.load_batches (file_id, seq, start_offset, end_offset, first_line,
            lines, rows_read, inserted, updated, unchanged, rejected, xids)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, array_remove(%s::xid[] {own}, NULL))
        """,
        (
            file_id,
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


@dataclass(frozen=True)
class Totals:
    """A file's counts, summed over its batches."""

    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int


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
