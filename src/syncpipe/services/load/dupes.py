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


def other_file_reason(key: list[str], name: str, line: int | None) -> str:
    """The reject reason of a key a different file of the table loaded already."""
    where = f" (line {line})" if line else ""
    return f"duplicate key {'/'.join(key)} already loaded from {name}{where}"


def lines_in_file(
    path: Path,
    *,
    size: int,
    mtime_ns: int | None,
    codec: str,
    key_names: tuple[str, ...],
    batches: list[tuple[int, int, int]],
    keys: set[tuple[str, ...]],
) -> dict[tuple[str, ...], int]:
    """The lines of ``keys`` in another file, read only in its batches (start, end, first line)
    that wrote them, and only while the file is the one the ledger loaded (same size and
    modification time); {} otherwise."""
    try:
        stat = path.stat()
        if stat.st_size != size or (mtime_ns is not None and stat.st_mtime_ns != mtime_ns):
            return {}
        with path.open("rb") as fh:
            header = fh.readline(1024 * 1024)
    except OSError:
        return {}
    names = next(iter(parse_records(header, 1, codec, 0)), None)
    fields = names.fields if names is not None else None
    if not fields:
        return {}
    fields = [f.strip().lstrip("\ufeff") for f in fields]
    if any(k not in fields for k in key_names):
        return {}
    index = [fields.index(k) for k in key_names]
    found: dict[tuple[str, ...], int] = {}
    for start, end, first_line in batches:
        for record in parse_records(read_range(path, start, end), first_line, codec, len(fields)):
            if record.fields is None or len(record.fields) != len(fields):
                continue
            key = key_text([record.fields[i] for i in index])
            if key in keys and key not in found:
                found[key] = record.line
    return found
