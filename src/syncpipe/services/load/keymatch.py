"""Which record of a file holds a key, compared as the table compares its keys.

A repeated key is the same key by the column's type and collation, not by its text: "3.50" is
3.5 in a numeric, "Abc" is "abc" in a citext or under a case-insensitive collation, "01" is 1
in an integer, "2024-01-01" is midnight in a timestamp with time zone. So the records' keys and
the keys looked for are copied into a temporary table shaped like the target's key (its types,
domains and collations) and joined there: the server is the one judge of equality. A record
whose key the server cannot read as that type (it was rejected when it was loaded) is left out.

For a batch whose keys many later batches look in, the server hashes them once instead
(``key_hashes``: each type's own hash function under its collation, 64 bits a column), so
that the keys looked for are matched by their hashes, not by copying the batch again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from syncpipe.services.load.copying import copy_bisect
from syncpipe.services.load.errors import is_lost
from syncpipe.services.load.records import Record

KEYS = "_syncpipe_keys"


def first_records(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    key_names: Sequence[str],
    key_index: Sequence[int],
    codec: str,
    records: Iterable[Record],
    keys: Sequence[Sequence[str]],
) -> list[Record | None]:
    """For each of ``keys`` (as the server prints a key of ``table``), the first of
    ``records`` (fields in the file's columns; the key's at ``key_index``) whose key equals it
    in ``table``'s key columns (``key_names``); None where none does."""
    if not keys:
        return []
    by_line: dict[int, Record] = {}
    rows: list[bytes] = []
    for record in records:
        fields = record.fields
        if fields is None or record.line in by_line or max(key_index) >= len(fields):
            continue
        key = [fields[i] for i in key_index]
        if any(v == "" or "\x00" in v for v in key):
            continue  # (never a loaded key: an empty field is NULL)
        row = _csv_row([*key, str(record.line), ""], codec)
        if row is not None:
            by_line[record.line] = record
            rows.append(row)
    if not rows:
        return [None] * len(keys)
    wanted = [_csv_row([*map(str, key), "", str(n)], codec) for n, key in enumerate(keys)]
    cols = [sql.Identifier(c) for c in key_names]
    ident = _create(
        conn, table, cols, sql.SQL("_syncpipe_line bigint, ADD COLUMN _syncpipe_want int")
    )
    copy = sql.SQL("COPY {} ({}, _syncpipe_line, _syncpipe_want) FROM STDIN (FORMAT csv)").format(
        ident, sql.SQL(", ").join(cols)
    )
    copy_bisect(conn, copy, [w for w in wanted if w is not None] + rows, b"".join)
    conn.execute(sql.SQL("ANALYZE {}").format(ident))
    same = sql.SQL(" AND ").join(sql.SQL("w.{c} = r.{c}").format(c=c) for c in cols)
    found = conn.execute(
        sql.SQL(
            "SELECT DISTINCT ON (w._syncpipe_want) w._syncpipe_want, r._syncpipe_line "
            "FROM {k} w JOIN {k} r ON {same} "
            "WHERE w._syncpipe_want IS NOT NULL AND r._syncpipe_want IS NULL "
            "ORDER BY w._syncpipe_want, r._syncpipe_line"
        ).format(k=ident, same=same)
    ).fetchall()
    conn.execute(sql.SQL("DROP TABLE {}").format(ident))
    out: list[Record | None] = [None] * len(keys)
    for n, line in found:
        out[int(n)] = by_line[int(line)]
    return out


def key_hashes(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    key_names: Sequence[str],
    codec: str,
    keys: Sequence[Sequence[str]],
) -> list[tuple[int, ...] | None] | None:
    """Each key's hash as ``table``'s key columns hash their values (their type's hash
    function under their collation, 64 bits a column: equal keys, equal hashes; "3.50" and
    3.5 alike), for a batch's keys to be compared once, not copied to the server again by
    every later batch that repeats one; None for a key the server cannot read as that type.
    None for all where a key column's type has no hash function."""
    if not keys:
        return []
    rows = [_csv_row([*key, str(n)], codec) for n, key in enumerate(keys)]
    good = [
        r
        for key, r in zip(keys, rows, strict=True)
        if r is not None and all(v != "" and "\x00" not in v for v in key)
    ]
    cols = [sql.Identifier(c) for c in key_names]
    ident = _create(conn, table, cols, sql.SQL("_syncpipe_n int"))
    copy = sql.SQL("COPY {} ({}, _syncpipe_n) FROM STDIN (FORMAT csv)").format(
        ident, sql.SQL(", ").join(cols)
    )
    copy_bisect(conn, copy, good, b"".join)
    hashes = sql.SQL(", ").join(
        sql.SQL("hash_array_extended(ARRAY[{}], 0)").format(c) for c in cols
    )
    try:
        with conn.transaction():
            found = conn.execute(
                sql.SQL("SELECT _syncpipe_n, {} FROM {}").format(hashes, ident)
            ).fetchall()
    except psycopg.Error as exc:  # (the type has no hash function: compared whole)
        if is_lost(conn, exc):
            raise
        found = None
    conn.execute(sql.SQL("DROP TABLE {}").format(ident))
    if found is None:
        return None
    out: list[tuple[int, ...] | None] = [None] * len(keys)
    for row in found:
        out[int(row[0])] = tuple(int(h) for h in row[1:])
    return out


def _create(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    cols: list[sql.Identifier],
    extra: sql.Composable,
) -> sql.Identifier:
    """The temporary table of keys shaped like ``table``'s key columns, with ``extra``
    columns; its name."""
    ident = sql.Identifier("pg_temp", KEYS)  # (not a table of that name elsewhere)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            ident, sql.SQL(", ").join(cols), table
        )
    )
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(ident, extra))
    return ident


def _csv_row(fields: list[str], codec: str) -> bytes | None:
    """One CSV line in the connection's encoding (the file's); None where a value cannot be
    written in it (an invalid byte kept from the file, or a record of another file in another
    encoding: never a key loaded by this connection)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    try:
        return buf.getvalue().encode(codec)
    except UnicodeEncodeError:
        return None
