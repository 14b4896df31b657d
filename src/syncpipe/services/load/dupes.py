"""Duplicate keys inside one file: the first row of a key wins, and every later one is
rejected naming the line of the first.

The server says a key was seen before and where (this piece, this batch, or a committed batch
of the file, by the transaction id its row carries); this module finds the line of that row by
parsing only the bytes of that batch, read again from the file.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from syncpipe.services.load.records import Record, parse_records


def key_text(values: list[str]) -> tuple[str, ...]:
    """A key as comparable text (UUIDs in canonical form)."""
    out = []
    for value in values:
        try:
            out.append(str(uuid.UUID(value)))
        except ValueError:
            out.append(value)
    return tuple(out)


def find_key(
    data: bytes,
    first_line: int,
    codec: str,
    ncols: int,
    key_index: list[int],
    key: list[str],
) -> Record | None:
    """The first record of ``data`` with this key."""
    wanted = key_text(key)
    for record in parse_records(data, first_line, codec, ncols):
        fields = record.fields
        if fields is None or len(fields) != ncols:
            continue
        if key_text([fields[i] for i in key_index]) == wanted:
            return record
    return None


def read_range(path: Path, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` of a file."""
    with path.open("rb") as fh:
        fh.seek(start)
        return fh.read(end - start)


def duplicate_reason(key: list[str], first_line: int | None) -> str:
    """The reject reason of a repeated key."""
    where = f"first at line {first_line}" if first_line else "first earlier in the file"
    return f"duplicate key {'/'.join(key)} in this file ({where})"
