"""The slow path: records parsed once from a refused piece, judged one by one, the good ones
staged with their line numbers and upserted, the bad ones rejected with line, column and reason.

It runs inside the batch's transaction. Each record is judged in Python first (types, JSON
shapes, nesting depth, lengths), so the server never sees what it cannot take; what the server
still refuses while staging is found by bisection. A key repeated in the file keeps its first
row (``dupes``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.services.load import dupes, ledger
from syncpipe.services.load.errors import no_rows_fault, server_reason
from syncpipe.services.load.records import Record, Reject, check_record
from syncpipe.services.load.state import BatchWork, FileContext
from syncpipe.services.load.upsert import Conflict


def run_slow(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    records: list[Record],
    *,
    exclusive: bool,
    earlier: bytes = b"",
) -> bool:
    """Load ``records``; False (nothing done) when good rows need the exclusive lane first.

    ``earlier`` is the part of the batch before these records (already written in this
    transaction), where a repeated key may have its first row.
    """
    good: list[Record] = []
    bad: list[Reject] = []
    for record in records:
        if record.blank:
            bad.append(Reject(record.line, "", "empty line", record.raw))
            continue
        problem = check_record(record, ctx.header.names, ctx.spec, ctx.header.validators, ctx.codec)
        if problem:
            bad.append(problem)
        else:
            good.append(record)
    if good and not exclusive:
        return False
    work.slow_records += len(records)
    work.row.rows_read += len(records)
    for reject in bad:
        work.reject(reject)
    if not good:
        return True
    ctx.target.create_stage(conn)
    staged = _stage(conn, ctx, work, good)
    if not staged:
        return True
    by_line = {r.line: r for r in staged}
    ctx.target.lock_rows(conn)  # LockNotAvailable: the caller tries the batch again later
    displaced = _resolve(conn, ctx, work, by_line, earlier)
    try:
        with conn.transaction():
            done = ctx.target.upsert(conn, file_id=ctx.file_id, batch_start=work.row.start)
    except psycopg.Error as exc:
        if no_rows_fault(conn, exc):
            raise
        _upsert_one_by_one(conn, ctx, work, by_line)
        return True
    work.row.inserted += done.inserted
    # a row that displaced a later row of the file counts as that row's reject, not an update
    work.row.updated += done.updated - min(displaced, done.updated)
    work.row.unchanged += done.unchanged - max(displaced - done.updated, 0)
    work.xids.update(done.xids)
    return True


def _encode(records: list[Record], codec: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for record in records:
        writer.writerow([*(record.fields or []), record.line])
    return buf.getvalue().encode(codec, errors="surrogateescape")


def _stage(
    conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork, records: list[Record]
) -> list[Record]:
    """Stage records with their line numbers; bisect to reject what the server refuses."""
    accepted: list[Record] = []
    pending = [records]
    while pending:
        chunk = pending.pop()
        try:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(ctx.target.copy_stage_lines) as copy,
            ):
                copy.write(_encode(chunk, ctx.codec))
            accepted.extend(chunk)
        except psycopg.Error as exc:
            if no_rows_fault(conn, exc):  # (the batch's, whole)
                raise
            if len(chunk) == 1:
                column, reason = server_reason(exc)
                work.reject(Reject(chunk[0].line, column, reason, chunk[0].raw))
            else:
                mid = len(chunk) // 2
                pending.extend([chunk[mid:], chunk[:mid]])
    return accepted


def _resolve(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    by_line: dict[int, Record],
    earlier: bytes,
) -> int:
    """Reject staged rows whose key came earlier in the file; where a staged row comes before
    a row of a later batch already written (parallel streams), the staged row wins and the
    later row is rejected (the number of such rows is returned)."""
    displaced = 0
    conflicts = ctx.target.conflicts(conn, ctx.file_id, sorted(work.xids), ctx.path.name)
    drop: list[int] = []
    names = ", ".join(ctx.spec.primary_key)
    other_lines = _other_lines(conn, ctx, [c for c in conflicts if c.where == "other"])
    for c in conflicts:
        line = c.line or 0
        record = by_line.get(line)
        raw = record.raw if record else b""
        if c.other is not None:
            # Loaded already by a different file of the table: that file keeps the key.
            drop.append(c.ord)
            name = c.other.name
            first = other_lines.get((c.other.id, dupes.key_text(c.key)))
            work.reject(Reject(line, names, dupes.other_file_reason(c.key, name, first), raw))
            continue
        if c.where == "stage":
            drop.append(c.ord)
            work.reject(Reject(line, names, dupes.duplicate_reason(c.key, c.first_line), raw))
            continue
        if c.where == "batch":
            found = dupes.find_key(
                earlier,
                work.batch.first_line,
                ctx.codec,
                len(ctx.header.names),
                ctx.header.key_index,
                c.key,
            )
            drop.append(c.ord)
            first = found.line if found else None
            work.reject(Reject(line, names, dupes.duplicate_reason(c.key, first), raw))
            continue
        other = _other_batch(conn, ctx, c)
        found = None
        if other is not None:
            data = dupes.read_range(ctx.path, other.start, other.end)
            found = dupes.find_key(
                data,
                other.first_line,
                ctx.codec,
                len(ctx.header.names),
                ctx.header.key_index,
                c.key,
            )
        if other is not None and other.start > work.row.start and found is not None:
            # The row written first comes later in the file: this one wins, that one goes.
            work.reject(Reject(found.line, names, dupes.duplicate_reason(c.key, line), found.raw))
            displaced += 1
            continue
        drop.append(c.ord)
        first = found.line if found else None
        work.reject(Reject(line, names, dupes.duplicate_reason(c.key, first), raw))
    ctx.target.drop_staged(conn, drop)
    return displaced


def _other_lines(
    conn: psycopg.Connection[Any], ctx: FileContext, conflicts: list[Conflict]
) -> dict[tuple[int, tuple[str, ...]], int]:
    """The lines of keys in the other files that loaded them, where the ledger still knows the
    batch and the file is unchanged: each such batch is read and parsed once."""
    wanted: dict[int, tuple[str, set[int], set[tuple[str, ...]]]] = {}
    for c in conflicts:
        if c.other is None or c.other.batch_start is None:
            continue
        _, starts, keys = wanted.setdefault(c.other.id, (c.other.path, set(), set()))
        starts.add(c.other.batch_start)
        keys.add(dupes.key_text(c.key))
    out: dict[tuple[int, tuple[str, ...]], int] = {}
    for file_id, (path, starts, keys) in wanted.items():
        seen = ledger.file_seen(conn, file_id)
        if seen is None:
            continue
        found = dupes.lines_in_file(
            Path(path),
            size=seen.size,
            mtime_ns=seen.mtime_ns,
            codec=seen.encoding,
            key_names=ctx.spec.primary_key,
            batches=ledger.batches_at(conn, file_id, sorted(starts)),
            keys=keys,
        )
        out.update({(file_id, key): line for key, line in found.items()})
    return out


def _other_batch(
    conn: psycopg.Connection[Any], ctx: FileContext, c: Conflict
) -> ledger.DoneBatch | None:
    if ctx.file_id is None:
        return None
    if c.where == "file" and c.xid is not None:
        return ledger.batch_of_xid(conn, ctx.file_id, c.xid)
    if c.batch_start is not None:
        return ledger.batch_at(conn, ctx.file_id, c.batch_start)
    return None


def _upsert_one_by_one(
    conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork, by_line: dict[int, Record]
) -> None:
    """The upsert of the stage failed (a foreign key, say): upsert row by row, rejecting the
    rows the server refuses."""
    for ord_, line in ctx.target.staged_rows(conn):
        try:
            with conn.transaction():
                done = ctx.target.upsert(
                    conn, file_id=ctx.file_id, batch_start=work.row.start, ord_=ord_
                )
        except psycopg.Error as exc:
            if no_rows_fault(conn, exc):
                raise
            column, reason = server_reason(exc)
            record = by_line.get(line)
            work.reject(Reject(line, column, reason, record.raw if record else b""))
            continue
        work.row.inserted += done.inserted
        work.row.updated += done.updated
        work.row.unchanged += done.unchanged
        work.xids.update(done.xids)
