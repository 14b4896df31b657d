"""The fast paths: a batch's raw bytes sent to COPY as they are, never parsed in Python.

* ``copy_batch``: the whole batch in one COPY straight into the table (a first load). The
  server checks types, JSON shapes, keys and the load's limits (``upsert.Target``'s guard).
* ``copy_around``: the batch again, in pieces around the records the server refused: the
  pieces before and after go to COPY, each refused record to the slow path (parsed once).
* ``upsert_batch``: the batch COPYed into a staging table and upserted (keys exist already).

Each returns an ``Outcome``: done, or why the batch must be handled otherwise (its transaction
is then rolled back by the caller): ``data`` (a record refused, numbered), ``unique`` (a key
exists already), ``retry`` (a deadlock with another load), ``lane`` (good rows need the
exclusive lane).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from syncpipe.services.load.errors import copy_record, is_lost, lasting, no_rows_fault, refusal
from syncpipe.services.load.records import parse_piece
from syncpipe.services.load.scan import count_records, record_at, record_span
from syncpipe.services.load.slow import run_slow
from syncpipe.services.load.state import BatchWork, FileContext

#: Refused records one batch may be split around before the rest of it takes the slow path.
MAX_SPLITS = 64

Kind = Literal["done", "data", "unique", "retry", "lane"]


@dataclass(frozen=True)
class Outcome:
    """How a batch went."""

    kind: Kind
    record: int | None = None  # the refused record (1-based in the data sent), if named


DONE = Outcome("done")


def _copy(conn: psycopg.Connection[Any], statement: Any, data: bytes) -> tuple[int, Outcome]:
    try:
        with conn.cursor() as cur:
            with cur.copy(statement) as copy:
                copy.write(data)
            return max(cur.rowcount, 0), DONE
    except psycopg.Error as exc:
        if is_lost(conn, exc) or lasting(exc):  # (the batch fails whole: errors.BatchRefused)
            raise
        return 0, Outcome(refusal(exc), copy_record(exc))


def copy_batch(conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork) -> Outcome:
    """The whole batch in one COPY, at the top level of the batch's transaction."""
    rows, outcome = _copy(conn, ctx.target.copy_direct, work.batch.data)
    if outcome.kind != "done":
        return outcome
    work.own_xid = True  # the ledger row takes the transaction's id as it is written
    _count(ctx, work, work.batch.data, rows)
    return DONE


def _count(ctx: FileContext, work: BatchWork, data: bytes, rows: int) -> None:
    """The rows a COPY of ``data`` wrote: read and inserted; where a trigger may have skipped
    some, their records counted from ``data`` and the rows not written unchanged (as the
    upsert counts them)."""
    read = max(count_records(data), rows) if ctx.spec.skips_rows else rows
    work.row.rows_read += read
    work.row.inserted += rows
    work.row.unchanged += read - rows


def _copy_piece(
    conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork, data: bytes, first_line: int
) -> Outcome:
    """One piece in a savepoint; its rows' transaction id is remembered."""
    try:
        with conn.transaction():
            rows, outcome = _copy(conn, ctx.target.copy_direct, data)
            if outcome.kind != "done":
                raise _Undo
    except _Undo:
        return outcome
    span = record_span(data, 1)
    first = (
        parse_piece(data[: span[1]], first_line, ctx.codec, len(ctx.header.names)) if span else []
    )
    if first and first[0].fields is not None and len(first[0].fields) == len(ctx.header.names):
        xid = ctx.target.xmin_of(conn, [first[0].fields[i] for i in ctx.header.key_index])
        if xid is not None:
            work.xids.add(xid)
    _count(ctx, work, data, rows)
    return DONE


class _Undo(Exception):
    """Roll the savepoint back (the COPY was refused)."""


def copy_around(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    known_bad: int | None,
    *,
    exclusive: bool,
) -> Outcome:
    """The batch in pieces around refused records; ``known_bad`` is a record already known
    to be refused (1-based). A batch that keeps failing goes to the slow path whole."""
    whole = work.batch.data
    suspects = list(work.batch.suspects)  # offsets in ``whole``, in order
    data, first_line, consumed, splits = whole, work.batch.first_line, 0, 0
    ncols = len(ctx.header.names)
    while data:
        span = record_span(data, known_bad) if known_bad else None
        while suspects and suspects[0] < consumed:
            suspects.pop(0)
        if suspects and (span is None or suspects[0] - consumed < span[0]):
            # a record the server would take silently comes first
            span = record_at(data, suspects[0] - consumed)
        if span is None or splits >= MAX_SPLITS:
            if splits < MAX_SPLITS:
                outcome = _copy_piece(conn, ctx, work, data, first_line)
                if outcome.kind != "data":
                    return outcome
                span = record_span(data, outcome.record) if outcome.record else None
            if span is None or splits >= MAX_SPLITS:
                records = parse_piece(data, first_line, ctx.codec, ncols)
                ok = run_slow(
                    conn, ctx, work, records, exclusive=exclusive, earlier=whole[:consumed]
                )
                return DONE if ok else Outcome("lane")
        known_bad = None
        splits += 1
        start, end = span
        head, bad = data[:start], data[start:end]
        if head:
            outcome = _copy_piece(conn, ctx, work, head, first_line)
            if outcome.kind == "data":
                known_bad = outcome.record  # an earlier record: split there first
                continue
            if outcome.kind != "done":
                return outcome
        bad_line = first_line + head.count(b"\n")
        records = parse_piece(bad, bad_line, ctx.codec, ncols)
        ok = run_slow(
            conn, ctx, work, records, exclusive=exclusive, earlier=whole[: consumed + start]
        )
        if not ok:
            return Outcome("lane")
        consumed += end
        data = data[end:]
        first_line = bad_line + bad.count(b"\n")
    return DONE


def upsert_batch(conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork) -> Outcome:
    """The batch staged raw and upserted; a refused batch, or one repeating a key of the file,
    is parsed once and goes to the slow path. Only in the exclusive lane."""
    target = ctx.target
    target.create_stage(conn)
    try:
        with conn.transaction():
            staged, outcome = _copy(conn, target.copy_stage_raw, work.batch.data)
            if outcome.kind != "done":
                raise _Undo
    except _Undo:
        staged = -1
    if staged >= 0:
        target.lock_rows(conn)  # LockNotAvailable: the caller tries the batch again later
    if staged >= 0 and not target.conflicts(conn, ctx.file_id, sorted(work.xids), ctx.path.name):
        try:
            with conn.transaction():
                done = target.upsert(conn, file_id=ctx.file_id, batch_start=work.row.start)
        except psycopg.Error as exc:
            if no_rows_fault(conn, exc):  # (a lock, say: tried again; not judged row by row)
                raise
        else:
            work.row.rows_read += staged
            work.row.inserted += done.inserted
            work.row.updated += done.updated
            work.row.unchanged += done.unchanged
            work.xids.update(done.xids)
            return DONE
    records = parse_piece(work.batch.data, work.batch.first_line, ctx.codec, len(ctx.header.names))
    run_slow(conn, ctx, work, records, exclusive=True)
    return DONE
