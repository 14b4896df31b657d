"""Duplicate keys inside one file: the first row of a key wins, and every later one is
rejected naming the line of the first.

The server says a key was seen before and where (this piece, this batch, or a committed batch
of the file, by the transaction id its row carries); the line of that row is found by parsing
only the bytes of that batch, read again from the file, and comparing keys on the server
(``keymatch``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_UP, Context, Decimal
from pathlib import Path

from syncpipe.services.load.records import Record, parse_records
from syncpipe.services.load.tables import TableSpec

#: the lines of each key of a batch (its ``key_text``, or its hash on the server), in file
#: order
KeyLines = dict[tuple[object, ...], list[int]]


def key_text(spec: TableSpec, values: list[str]) -> tuple[str, ...]:
    """A key (its values in ``spec.primary_key``'s order) as the table would compare it, as
    near as it can be said without the server: a dry run's batches, rolled back, leave it
    nothing to compare with. Integers, numbers, booleans and UUIDs by their value ("03" is 3,
    "3.50" is 3.5), a citext in lower case, the rest by their text."""
    return tuple(
        _by_value(spec.columns[name].type_name, value)
        for name, value in zip(spec.primary_key, values, strict=True)
    )


#: a context that rounds no number PostgreSQL's numeric holds (131,072 digits before the
#: point, 16,383 after)
_EXACT = Context(prec=150_000, Emax=MAX_EMAX, Emin=MIN_EMIN)
_LENGTH = re.compile(r"character varying\((\d+)\)")
_SCALE = re.compile(r"numeric\(\d+,(-?\d+)\)")
_TRUE = frozenset(("t", "true", "y", "yes", "on", "1"))
_FALSE = frozenset(("f", "false", "n", "no", "off", "0"))


def _by_value(type_name: str, value: str) -> str:
    base = type_name.split("(")[0]
    try:
        if base in ("smallint", "integer", "bigint"):
            return str(int(value.strip()))
        if base == "numeric":
            number = Decimal(value.strip())
            scale = _SCALE.search(type_name)
            if scale and number.is_finite():  # (rounded to the column's scale, as it stores)
                places = Decimal(1).scaleb(-int(scale.group(1)))
                number = number.quantize(places, rounding=ROUND_HALF_UP, context=_EXACT)
            # (-0 is 0; every digit kept: the default context's 28 made two numbers one)
            return "0" if number == 0 else str(number.normalize(_EXACT))
        if base == "uuid":
            return str(uuid.UUID(value))
    except (ValueError, ArithmeticError):
        return value  # (rejected by the server: never a key)
    if base == "boolean":
        word = value.strip().lower()
        return "t" if word in _TRUE else "f" if word in _FALSE else value
    if base == "citext":
        return value.lower()
    length = _LENGTH.fullmatch(type_name)
    if length and len(value) > int(length.group(1)):  # (spaces past its length are cut)
        cut = value[: int(length.group(1))]
        return cut if not value[len(cut) :].strip(" ") else value
    return value


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


def records_in_file(
    path: Path,
    *,
    size: int,
    mtime_ns: int | None,
    codec: str,
    key_names: tuple[str, ...],
    batches: list[tuple[int, int, int]],
) -> tuple[list[int], list[Record]] | None:
    """The records of another file in its batches (start, end, first line), and where its key
    columns are, read only while the file is the one the ledger loaded (same size and
    modification time); None otherwise."""
    try:
        stat = path.stat()
        if stat.st_size != size or (mtime_ns is not None and stat.st_mtime_ns != mtime_ns):
            return None
        with path.open("rb") as fh:
            header = fh.readline(1024 * 1024)
    except OSError:
        return None
    names = next(iter(parse_records(header, 1, codec, 0)), None)
    fields = names.fields if names is not None else None
    if not fields:
        return None
    fields = [f.strip().lstrip("\ufeff") for f in fields]
    if any(k not in fields for k in key_names):
        return None
    records: list[Record] = []
    try:
        for start, end, first_line in batches:
            data = read_range(path, start, end)
            records.extend(
                r
                for r in parse_records(data, first_line, codec, len(fields))
                if r.fields is not None and len(r.fields) == len(fields)
            )
    except OSError:
        return None
    return [fields.index(k) for k in key_names], records


def key_lines(
    spec: TableSpec, key_index: list[int], ncols: int, records: Iterable[Record]
) -> KeyLines:
    """The lines of each key (``key_text``) among ``records`` of ``ncols`` fields, in file
    order."""
    out: KeyLines = {}
    for record in records:
        fields = record.fields
        if fields is None or len(fields) != ncols:
            continue
        key = key_text(spec, [fields[i] for i in key_index])
        out.setdefault(key, []).append(record.line)
    return out
