"""COPY of many rows where the server may refuse some: the refused ones are found by
bisection, each COPY of a part in a savepoint, so the good rows go in and every refused row is
named with the server's error."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from syncpipe.services.load.errors import no_rows_fault
from syncpipe.services.load.records import Record

T = TypeVar("T")


def encode_records(records: Sequence[Record], codec: str) -> bytes:
    """Records as CSV in the file's encoding, each with its line number last (the staging
    table's ``_syncpipe_line``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for record in records:
        writer.writerow([*(record.fields or []), record.line])
    return buf.getvalue().encode(codec, errors="surrogateescape")


def copy_bisect(
    conn: psycopg.Connection[Any],
    statement: sql.Composed,
    items: Sequence[T],
    encode: Callable[[Sequence[T]], bytes],
) -> tuple[list[T], list[tuple[T, psycopg.Error]]]:
    """COPY ``items`` (as ``encode`` writes them) with ``statement``; (the items taken, the
    items refused one by one with why). An error no row causes (the database lost, a lasting
    refusal, a lock wait) is raised."""
    taken: list[T] = []
    refused: list[tuple[T, psycopg.Error]] = []
    pending = [list(items)] if items else []
    while pending:
        chunk = pending.pop()
        try:
            with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                copy.write(encode(chunk))
            taken.extend(chunk)
        except psycopg.Error as exc:
            if no_rows_fault(conn, exc):
                raise
            if len(chunk) == 1:
                refused.append((chunk[0], exc))
            else:
                mid = len(chunk) // 2
                pending.extend([chunk[mid:], chunk[:mid]])
    return taken, refused
