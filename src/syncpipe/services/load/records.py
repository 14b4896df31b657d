"""The slow path: parse a batch the server refused, record by record, and say what is wrong.

Every record keeps its physical line number and its original bytes, so a rejected row can be
found in the file and repaired. Parsing resynchronises after a bad line: a stray quote costs
that line, never the rows after it. Invalid UTF-8 bytes are kept (surrogate escapes) and
reported with the column they are in.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from syncpipe.services.load.tables import TableSpec

csv.field_size_limit(2**31 - 1)  # a team page may hold a thousand members in one cell

_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_BOOLEANS = {"t", "f", "true", "false", "1", "0", "yes", "no", "y", "n", "on", "off"}
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass
class Record:
    """One record of the file (or one bad line), with its location and original bytes."""

    line: int
    raw: bytes
    fields: list[str] | None = None
    error: str | None = None
    column: str | None = None
    blank: bool = False


@dataclass
class Reject:
    """A row that was not loaded, and why."""

    line: int
    column: str
    reason: str
    raw: bytes


def split_lines(data: bytes) -> list[bytes]:
    """Physical lines (ended by a newline), each with its line ending."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def parse_records(data: bytes, first_line: int, encoding: str, ncols: int) -> Iterator[Record]:
    """Records of a batch; malformed lines come out as records with ``error`` set."""
    lines = split_lines(data)
    i = 0
    while i < len(lines):
        line_no = first_line + i
        if not lines[i].strip(b"\r\n"):
            yield Record(line=line_no, raw=lines[i], blank=True)
            i += 1
            continue
        # Gather lines while the record's quotes are unbalanced (a quoted field with newlines).
        j = i + 1
        quotes = lines[i].count(b'"')
        while quotes % 2 and j < len(lines):
            quotes += lines[j].count(b'"')
            j += 1
        raw = b"".join(lines[i:j])
        if quotes % 2:
            yield Record(line=line_no, raw=lines[i], error="unterminated quoted field")
            i += 1
            continue
        text = raw.decode(encoding, errors="surrogateescape")
        try:
            fields = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration) as exc:
            reason = f"malformed CSV ({exc})" if str(exc) else "malformed CSV"
            yield Record(line=line_no, raw=lines[i], error=reason)
            i += 1
            continue
        if len(fields) != ncols and j - i > 1:
            # A multi-line record with the wrong field count is almost always a stray quote:
            # reject this line only and carry on with the next one.
            yield Record(
                line=line_no,
                raw=lines[i],
                error=f"unbalanced quote (the record ran on for {j - i} lines)",
            )
            i += 1
            continue
        yield Record(line=line_no, raw=raw, fields=fields)
        i = j


Validator = Callable[[str], str | None]


def _uuid(value: str) -> str | None:
    try:
        uuid.UUID(value)
    except ValueError:
        return f"{value[:40]!r} is not a UUID"
    return None


def _json(shape: str | None) -> Validator:
    def check(value: str) -> str | None:
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError) as exc:
            return f"is not valid JSON ({str(exc).split(':')[0]})"
        if shape == "array_of_strings":
            if not isinstance(parsed, list):
                return f"must be a JSON array of strings, not {_kind(parsed)}"
            for item in parsed:
                if not isinstance(item, str):
                    return f"must be a JSON array of strings; it holds {_kind(item)}"
        elif shape == "array" and not isinstance(parsed, list):
            return f"must be a JSON array, not {_kind(parsed)}"
        elif shape == "object" and not isinstance(parsed, dict):
            return f"must be a JSON object, not {_kind(parsed)}"
        return None

    return check


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _integer(type_name: str) -> Validator:
    low, high = _INT_RANGES[type_name]

    def check(value: str) -> str | None:
        try:
            number = int(value.strip())
        except ValueError:
            return f"{value[:40]!r} is not an integer"
        if not low <= number <= high:
            return f"{number} is out of range for {type_name}"
        return None

    return check


def _numeric(value: str) -> str | None:
    try:
        float(value)
    except ValueError:
        return f"{value[:40]!r} is not a number"
    return None


def _boolean(value: str) -> str | None:
    return None if value.strip().lower() in _BOOLEANS else f"{value[:40]!r} is not a boolean"


def validators_for(spec: TableSpec, header: list[str]) -> list[Validator | None]:
    """One validator (or None) per header column, from the column's type and shape."""
    out: list[Validator | None] = []
    for name in header:
        col = spec.columns[name]
        base = col.type_name.split("(")[0]
        if base == "uuid":
            out.append(_uuid)
        elif base in ("json", "jsonb"):
            out.append(_json(spec.shape(name)))
        elif base in _INT_RANGES:
            out.append(_integer(base))
        elif base in ("numeric", "real", "double precision"):
            out.append(_numeric)
        elif base == "boolean":
            out.append(_boolean)
        else:
            out.append(None)
    return out


def check_record(
    record: Record,
    header: list[str],
    spec: TableSpec,
    validators: list[Validator | None],
    encoding: str,
) -> Reject | None:
    """Validate one parsed record; a Reject says the line, the column and the reason."""
    if record.error:
        return Reject(record.line, record.column or "", record.error, record.raw)
    fields = record.fields or []
    if len(fields) != len(header):
        what = "too many" if len(fields) > len(header) else "too few"
        return Reject(
            record.line,
            "",
            f"{what} fields: {len(fields)} instead of {len(header)}",
            record.raw,
        )
    for name, value, validate in zip(header, fields, validators, strict=True):
        bad = _SURROGATE.search(value)
        if bad:
            byte = ord(bad.group(0)) - 0xDC00
            return Reject(
                record.line,
                name,
                f"invalid {encoding} byte 0x{byte:02X} (is the file in another encoding? "
                "see --encoding)",
                record.raw,
            )
        if "\x00" in value:
            return Reject(record.line, name, "contains a NUL byte", record.raw)
        column = spec.columns[name]
        if value == "":
            if column.not_null and not column.has_default:
                return Reject(record.line, name, "is empty but required", record.raw)
            continue
        if column.not_null and column.type_name == "text" and not value.strip():
            return Reject(record.line, name, "is blank but required", record.raw)
        if validate is not None:
            problem = validate(value)
            if problem:
                return Reject(record.line, name, problem, record.raw)
    return None
