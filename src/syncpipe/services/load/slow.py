"""The slow path: records parsed once from a refused piece, judged one by one, the good ones
staged with their line numbers and upserted, the bad ones rejected with line, column and reason.

It runs inside the batch's transaction. Each record is judged in Python first (types, JSON
shapes, nesting depth, lengths), so the server never sees what it cannot take; what the server
still refuses while staging is found by bisection. A key repeated in the file keeps its first
row (``dupes``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.services.load import dupes, keymatch, ledger
from syncpipe.services.load.copying import copy_bisect, encode_records
from syncpipe.services.load.errors import no_rows_fault, server_reason
from syncpipe.services.load.records import Record, Reject, check_record, parse_records
from syncpipe.services.load.state import BatchWork, FileContext
from syncpipe.services.load.upsert import Conflict, Upserted


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
    displacing, held = _resolve(conn, ctx, work, by_line, earlier)
    _take_over(conn, ctx, work, displacing)
    refused: dict[int, tuple[int, int] | None] = {}
    try:
        with conn.transaction():
            done = ctx.target.upsert(conn, file_id=ctx.file_id, batch_start=work.row.start)
    except psycopg.Error as exc:
        if no_rows_fault(conn, exc):
            raise
        done = _upsert_one_by_one(conn, ctx, work, by_line, held, refused)
    work.xids.update(done.xids)
    _pass_on(work, displacing, refused)
    # a row that displaced a later row of the file counts as that row's reject, not an update
    displaced = len(displacing)
    work.row.inserted += done.inserted
    work.row.updated += done.updated - min(displaced, done.updated)
    work.row.unchanged += done.unchanged - max(displaced - done.updated, 0)
    return True


def _take_over(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    displacing: dict[int, _Repeat],
) -> None:
    """The staged rows that displace a later batch's rows take their rows over before the
    upsert (``Target.take_over``) and leave ``displacing``: the later batch counted them, and
    their later rows are rejects. One an update trigger skips leaves it too: its later row
    stays, and is no reject. Where the server refuses the take-over, all stay staged."""
    taken = ctx.target.take_over(conn, list(displacing)) if displacing else None
    if taken is None:
        return
    for ord_ in list(displacing):
        displacement = displacing.pop(ord_)
        if ord_ not in taken[0]:
            work.rejects.remove(displacement.reject)
    work.xids.update(taken[1])


def _pass_on(
    work: BatchWork, displacing: dict[int, _Repeat], refused: dict[int, tuple[int, int] | None]
) -> None:
    """A displacing row the server refused displaces nothing: its repeat in the batch that
    took its place (``refused``: ord -> the heir's ord and line) displaces the later row in
    its stead, else the later row stays and is no reject. In the order refused, so that an
    heir refused in turn passes it on again."""
    for ord_, heir in refused.items():
        displacement = displacing.pop(ord_, None)
        if displacement is None:
            continue
        if heir is None:
            work.rejects.remove(displacement.reject)
        else:
            heir_ord, heir_line = heir
            displacement.reject.reason = dupes.duplicate_reason(displacement.key, heir_line)
            displacing[heir_ord] = displacement


def _stage(
    conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork, records: list[Record]
) -> list[Record]:
    """Stage records with their line numbers; reject what the server refuses."""
    accepted, refused = copy_bisect(
        conn, ctx.target.copy_stage_lines, records, lambda chunk: encode_records(chunk, ctx.codec)
    )
    for record, exc in refused:
        column, reason = server_reason(exc)
        work.reject(Reject(record.line, column, reason, record.raw))
    return accepted


@dataclass
class _Repeat:
    """A row rejected as a repeat, with its key: of an earlier staged row, kept to take that
    row's place should the server refuse it when it is written; or of a later batch's, which
    a staged row displaces."""

    record: Record
    key: list[str]
    reject: Reject


def _resolve(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    by_line: dict[int, Record],
    earlier: bytes,
) -> tuple[dict[int, _Repeat], dict[int, list[_Repeat]]]:
    """Reject staged rows whose key came earlier: in the file, or in a different file of the
    table; where a staged row comes before a row of a later batch already written (parallel
    streams), the staged row wins and the later row is rejected. Returns the staged rows that
    so take a later row's place (ord -> the later row, rejected), and the repeats of each
    staged row that stays (by its line), in file order."""
    conflicts = ctx.target.conflicts(conn, ctx.file_id, sorted(work.xids), ctx.path.name)
    names = ", ".join(ctx.spec.primary_key)
    in_other_files = _other_lines(conn, ctx, [c for c in conflicts if c.other is not None])
    in_file = _earlier_rows(conn, ctx, work, conflicts, earlier)
    drop: list[int] = []
    displacing: dict[int, _Repeat] = {}
    #: where the first row of a staged row's key is (another file's name, or None for this
    #: file; its line), for a later repeat in the stage of a row itself rejected
    first_of: dict[int, tuple[str | None, int | None]] = {}
    held: dict[int, list[_Repeat]] = {}
    for c in conflicts:
        line = c.line or 0
        record = by_line.get(line)
        raw = record.raw if record else b""
        if c.other is not None:
            # Loaded already by a different file of the table: that file keeps the key.
            first: tuple[str | None, int | None] = (c.other.name, in_other_files.get(c.ord))
        elif c.where == "stage":
            first = first_of.get(c.first_line or 0, (None, c.first_line))
        else:
            batch, found = in_file.get(c.ord, (None, None))
            if batch is not None and batch.start > work.row.start and found is not None:
                # The row written first comes later in the file: this one wins, that one goes.
                reason = dupes.duplicate_reason(c.key, line)
                displaced = Reject(found.line, names, reason, found.raw)
                displacing[c.ord] = _Repeat(found, c.key, displaced)
                work.reject(displaced)
                continue
            first = (None, found.line if found else None)
        drop.append(c.ord)
        first_of[line] = first
        name, first_line = first
        if name is None:
            reason = dupes.duplicate_reason(c.key, first_line)
        else:
            reason = dupes.other_file_reason(c.key, name, first_line)
        reject = Reject(line, names, reason, raw)
        work.reject(reject)
        kept = c.where == "stage" and c.first_line not in first_of  # (its first row stays)
        if kept and c.first_line is not None and record is not None:
            held.setdefault(c.first_line, []).append(_Repeat(record, c.key, reject))
    ctx.target.drop_staged(conn, drop)
    return displacing, held


def _first_records(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    key_index: list[int],
    records: list[Record],
    rejected: set[int],
    conflicts: list[Conflict],
) -> list[Record | None]:
    """The first of ``records`` (not ``rejected``) holding each conflict's key, compared on
    the server."""
    return keymatch.first_records(
        conn,
        ctx.target.table,
        ctx.spec.primary_key,
        key_index,
        ctx.codec,
        [r for r in records if r.line not in rejected],
        [c.key for c in conflicts],
    )


def _earlier_rows(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    conflicts: list[Conflict],
    earlier: bytes,
) -> dict[int, tuple[ledger.DoneBatch | None, Record | None]]:
    """For each conflict with an earlier row of this file outside the stage (by its ord): the
    committed batch that holds that row (None: this batch, before the stage), and the row,
    where it is found. Each batch is read once."""
    batches = _batches_of(conn, ctx, conflicts)
    groups: dict[int | None, tuple[ledger.DoneBatch | None, list[Conflict]]] = {}
    out: dict[int, tuple[ledger.DoneBatch | None, Record | None]] = {}
    for c in conflicts:
        if c.other is not None or c.where == "stage":
            continue
        batch = batches.get(c.ord)
        if batch is None and c.where != "batch":
            out[c.ord] = (None, None)
            continue
        groups.setdefault(None if batch is None else batch.start, (batch, []))[1].append(c)
    hashes: dict[int, tuple[int, ...] | None] | None = None
    committed = [c for _, group in groups.values() for c in group if c.where != "batch"]
    if not ctx.spec.plain_key and committed:
        # (the keys looked for, hashed once for all the batches they are looked for in)
        got = keymatch.key_hashes(
            conn, ctx.target.table, ctx.spec.primary_key, ctx.codec, [c.key for c in committed]
        )
        if got is not None:
            hashes = {c.ord: h for c, h in zip(committed, got, strict=True)}
    for batch, group in groups.values():
        found: list[Record | None] = [None] * len(group)
        if ctx.spec.plain_key:
            found = _first_plain(conn, ctx, work, batch, group, earlier)
        elif batch is not None and hashes is not None:
            wanted = [hashes[c.ord] for c in group]
            found = _first_hashed(conn, ctx, work, batch, wanted) or found
        # (what Python did not find, the server looks for: the judge of equality)
        missed = [n for n, f in enumerate(found) if f is None]
        if missed:
            more = _first_on_server(conn, ctx, work, batch, [group[n] for n in missed], earlier)
            for n, f in zip(missed, more, strict=True):
                found[n] = f
        out.update({c.ord: (batch, f) for c, f in zip(group, found, strict=True)})
    return out


def _batches_of(
    conn: psycopg.Connection[Any], ctx: FileContext, conflicts: list[Conflict]
) -> dict[int, ledger.DoneBatch]:
    """The committed batch of the file holding each conflict's earlier row (by its ord):
    found by the transaction id the row carries, or where the ledger remembers the key left
    unchanged. One query for all the ids."""
    if ctx.file_id is None:
        return {}
    by_xid = ledger.batches_of_xids(
        conn, ctx.file_id, sorted({c.xid for c in conflicts if c.where == "file" and c.xid})
    )
    at: dict[int, ledger.DoneBatch | None] = {}
    out: dict[int, ledger.DoneBatch] = {}
    for c in conflicts:
        batch = None
        if c.other is not None:
            continue
        if c.where == "file" and c.xid is not None:
            batch = by_xid.get(c.xid)
        elif c.batch_start is not None:
            if c.batch_start not in at:
                at[c.batch_start] = ledger.batch_at(conn, ctx.file_id, c.batch_start)
            batch = at[c.batch_start]
        if batch is not None:
            out[c.ord] = batch
    return out


def _first_on_server(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    batch: ledger.DoneBatch | None,
    group: list[Conflict],
    earlier: bytes,
) -> list[Record | None]:
    """The first rows of the conflicts' keys in ``batch`` (None: ``earlier``), parsed whole
    and compared on the server."""
    ncols = len(ctx.header.names)
    if batch is None:
        records = list(parse_records(earlier, work.batch.first_line, ctx.codec, ncols))
    else:
        records = _records(ctx, batch)
    rejected = _rejected(conn, ctx, work, batch)
    return _first_records(conn, ctx, ctx.header.key_index, records, rejected, group)


def _first_plain(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    batch: ledger.DoneBatch | None,
    group: list[Conflict],
    earlier: bytes,
) -> list[Record | None]:
    """The first rows of the conflicts' keys in ``batch`` (None: ``earlier``), for a key
    Python compares exactly (``TableSpec.plain_key``): a committed batch is parsed once per
    load (``BatchKeys``)."""
    ncols = len(ctx.header.names)
    index = ctx.header.key_index
    if batch is None:
        records = parse_records(earlier, work.batch.first_line, ctx.codec, ncols)
        lines = dupes.key_lines(ctx.spec, index, ncols, records)
    else:
        kept = ctx.batch_keys.get(("text", batch.start))
        if kept is None:
            kept = dupes.key_lines(ctx.spec, index, ncols, _records(ctx, batch))
            ctx.batch_keys.put(("text", batch.start), kept)
        lines = kept
    candidates = [lines.get(dupes.key_text(ctx.spec, c.key), []) for c in group]
    return _pick(conn, ctx, work, batch, candidates)


def _first_hashed(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    batch: ledger.DoneBatch,
    wanted: list[tuple[int, ...] | None],
) -> list[Record | None] | None:
    """The first rows of keys (by their hashes, ``wanted``) in a committed ``batch``, for a
    key the server compares: by the hashes of the batch's keys, asked of the server once per
    load (``BatchKeys``), so that every later batch repeating one of its keys does not copy
    the batch to the server again. None where the key's type has no hash function."""
    ncols = len(ctx.header.names)
    index = ctx.header.key_index
    table, names, codec = ctx.target.table, ctx.spec.primary_key, ctx.codec
    kept = ctx.batch_keys.get(("hash", batch.start))
    if kept is None:
        records = [r for r in _records(ctx, batch) if r.fields and len(r.fields) == ncols]
        keys = [[(r.fields or [])[i] for i in index] for r in records]
        hashes = keymatch.key_hashes(conn, table, names, codec, keys)
        if hashes is None:
            return None
        kept = {}
        for record, h in zip(records, hashes, strict=True):
            if h is not None:
                kept.setdefault(h, []).append(record.line)
        ctx.batch_keys.put(("hash", batch.start), kept)
    candidates = [kept.get(h, []) if h is not None else [] for h in wanted]
    return _pick(conn, ctx, work, batch, candidates)


def _records(ctx: FileContext, batch: ledger.DoneBatch) -> list[Record]:
    """A committed batch's records, read again from the file."""
    data = dupes.read_range(ctx.path, batch.start, batch.end)
    return list(parse_records(data, batch.first_line, ctx.codec, len(ctx.header.names)))


def _rejected(
    conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork, batch: ledger.DoneBatch | None
) -> set[int]:
    """The lines of ``batch`` (None: this one) that were rejected: never a key's first row."""
    if batch is None:
        return {r.line for r in work.rejects}
    assert ctx.file_id is not None  # (a committed batch: not a dry run)
    last = batch.first_line + batch.lines
    return ledger.rejected_lines(conn, ctx.file_id, batch.first_line, last)


def _pick(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    batch: ledger.DoneBatch | None,
    candidates: list[list[int]],
) -> list[Record | None]:
    """The first line of each list of ``candidates`` (lines holding a conflict's key in
    ``batch``; None: this batch) that was not rejected; the row whole only where it is
    needed (a later batch's row to reject), read again from the file then."""
    rejected = _rejected(conn, ctx, work, batch)
    firsts = [next((n for n in found if n not in rejected), None) for found in candidates]
    whole: dict[int, Record] = {}
    if batch is not None and batch.start > work.row.start and any(firsts):
        wanted = set(firsts)
        whole = {r.line: r for r in _records(ctx, batch) if r.line in wanted}
    return [None if n is None else whole.get(n) or Record(line=n, raw=b"") for n in firsts]


def _other_lines(
    conn: psycopg.Connection[Any], ctx: FileContext, conflicts: list[Conflict]
) -> dict[int, int]:
    """The lines (by conflict ord) of keys in the other files that loaded them, where the
    ledger still knows the batch and the file is unchanged: each such file is read and parsed
    once, in those batches only."""
    wanted: dict[int, tuple[str, set[int], list[Conflict]]] = {}
    for c in conflicts:
        if c.other is None or c.other.batch_start is None:
            continue
        _, starts, group = wanted.setdefault(c.other.id, (c.other.path, set(), []))
        starts.add(c.other.batch_start)
        group.append(c)
    out: dict[int, int] = {}
    for file_id, (path, starts, group) in wanted.items():
        seen = ledger.file_seen(conn, file_id)
        if seen is None:
            continue
        got = dupes.records_in_file(
            Path(path),
            size=seen.size,
            mtime_ns=seen.mtime_ns,
            codec=seen.encoding,
            key_names=ctx.spec.primary_key,
            batches=ledger.batches_at(conn, file_id, sorted(starts)),
        )
        if got is None:
            continue
        index, records = got
        lines = [r.line for r in records]
        rejected = ledger.rejected_lines(
            conn, file_id, min(lines, default=0), max(lines, default=0)
        )
        found = _first_records(conn, ctx, index, records, rejected, group)
        out.update({c.ord: f.line for c, f in zip(group, found, strict=True) if f is not None})
    return out


def _upsert_one_by_one(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    by_line: dict[int, Record],
    held: dict[int, list[_Repeat]],
    refused: dict[int, tuple[int, int] | None],
) -> Upserted:
    """The upsert of the stage failed (a foreign key, say): upsert row by row, rejecting the
    rows the server refuses. A refused row's first repeat in the stage takes its place, as it
    would have had the row been rejected before it was staged (``refused``: the ord of each
    refused row -> the ord and line of the repeat that took its place, if one did)."""
    inserted = updated = unchanged = 0
    xids: set[str] = set()
    todo = deque(ctx.target.staged_rows(conn))
    while todo:
        ord_, line = todo.popleft()
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
            promoted = _promote(conn, ctx, work, held.pop(line, []), held)
            refused[ord_] = promoted
            if promoted is not None:
                todo.appendleft(promoted)
            continue
        inserted += done.inserted
        updated += done.updated
        unchanged += done.unchanged
        xids.update(done.xids)
    return Upserted(inserted, updated, unchanged, tuple(xids))


def _promote(
    conn: psycopg.Connection[Any],
    ctx: FileContext,
    work: BatchWork,
    repeats: list[_Repeat],
    held: dict[int, list[_Repeat]],
) -> tuple[int, int] | None:
    """The first of a refused row's repeats staged again in its place (ord, line): no longer
    a reject, and the first row the others repeat."""
    if not repeats:
        return None
    first, rest = repeats[0], repeats[1:]
    work.rejects.remove(first.reject)
    for repeat in rest:
        repeat.reject.reason = dupes.duplicate_reason(repeat.key, first.record.line)
    if rest:
        held[first.record.line] = rest
    taken, _ = copy_bisect(
        conn,
        ctx.target.copy_stage_lines,
        [first.record],
        lambda chunk: encode_records(chunk, ctx.codec),
    )
    ord_ = ctx.target.staged_ord(conn, first.record.line) if taken else None
    if ord_ is None:  # (staged once already: not expected)
        work.reject(first.reject)
        return None
    return ord_, first.record.line
