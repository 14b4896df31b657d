"""Records: a piece of CSV bytes parsed once into records, and the checks that judge a record.

A piece the fast path cannot take is parsed here exactly once: every record keeps its physical
line number, its original bytes and its fields, and travels so down the slow path (checks,
staging, upsert, reject file). Parsing resynchronises after a bad line: a stray quote costs that
line, never the rows after it. Invalid bytes are kept (surrogate escapes) and reported with the
column they are in.

Limits, checked here before the server sees a value:

* JSON nested deeper than ``MAX_JSON_DEPTH`` arrays/objects is rejected (the server's parser
  would run out of stack on it and refuse the whole batch);
* a value the merge indexes (a team_id or an e-mail) longer than ``MAX_KEY_CHARS`` characters
  is rejected (an index entry holds at most 2,704 bytes).
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from syncpipe.services.load.cut import cut
from syncpipe.services.load.tables import Limit, Shape, TableSpec

csv.field_size_limit(2**31 - 1)  # a team page may hold a thousand members in one cell

#: Deepest JSON nesting (arrays and objects) a value may have.
MAX_JSON_DEPTH = 100
#: Longest team_id or e-mail (characters) the merge can index.
MAX_KEY_CHARS = 500
#: Member fields whose strings the merge indexes (their bytes are screened: ``scan``).
MEMBER_KEYS = ("email", "emails")

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
    blank: bool = False


@dataclass
class Reject:
    """A row that was not loaded, and why: line, column, the value (cut) and the reason."""

    line: int
    column: str
    reason: str
    raw: bytes
    value: str = ""


def split_lines(data: bytes) -> list[bytes]:
    """Physical lines (ended by a newline), each with its line ending."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def parse_records(data: bytes, first_line: int, encoding: str, ncols: int) -> Iterator[Record]:
    """Records of a piece; malformed lines come out as records with ``error`` set."""
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


def parse_piece(data: bytes, first_line: int, encoding: str, ncols: int) -> list[Record]:
    """All records of a piece, blank lines included (each says it is blank)."""
    return list(parse_records(data, first_line, encoding, ncols))


Validator = Callable[[str], str | None]


def _uuid(value: str) -> str | None:
    try:
        uuid.UUID(value)
    except ValueError:
        return f"{cut(value)} is not a UUID"
    return None


def json_depth(value: object) -> int:
    """Nesting depth of a parsed JSON value (arrays and objects), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _too_long(strings: Iterator[object]) -> str | None:
    for item in strings:
        if isinstance(item, str) and len(item) > MAX_KEY_CHARS:
            return (
                f"holds a value of {len(item):,} characters ({cut(item)}); the merge indexes "
                f"at most {MAX_KEY_CHARS}"
            )
    return None


def _member_strings(parsed: list[object]) -> Iterator[object]:
    for member in parsed:
        if isinstance(member, dict):
            for key in MEMBER_KEYS:
                value = member.get(key)
                if isinstance(value, list):
                    yield from value
                else:
                    yield value


def _json(shape: Shape | None, limit: Limit | None) -> Validator:
    def check(value: str) -> str | None:
        try:
            parsed = json.loads(value)
        except RecursionError:
            return f"is JSON nested deeper than {MAX_JSON_DEPTH} levels"
        except ValueError as exc:
            return f"is not valid JSON ({str(exc).split(':')[0]})"
        if json_depth(parsed) > MAX_JSON_DEPTH:
            return f"is JSON nested deeper than {MAX_JSON_DEPTH} levels"
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
        if limit == "strings" and isinstance(parsed, list):
            return _too_long(iter(parsed))
        if limit == "members" and isinstance(parsed, list):
            return _too_long(_member_strings(parsed))
        return None

    return check


def _text(limit: Limit | None) -> Validator | None:
    if limit != "text":
        return None

    def check(value: str) -> str | None:
        if len(value) > MAX_KEY_CHARS:
            return (
                f"is {len(value):,} characters long ({cut(value)}); the merge indexes at "
                f"most {MAX_KEY_CHARS}"
            )
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
            return f"{cut(value)} is not an integer"
        if not low <= number <= high:
            return f"{number} is out of range for {type_name}"
        return None

    return check


def _numeric(value: str) -> str | None:
    try:
        float(value)
    except ValueError:
        return f"{cut(value)} is not a number"
    return None


def _boolean(value: str) -> str | None:
    return None if value.strip().lower() in _BOOLEANS else f"{cut(value)} is not a boolean"


def validators_for(spec: TableSpec, header: list[str]) -> list[Validator | None]:
    """One validator (or None) per header column, from the column's type, shape and limit."""
    out: list[Validator | None] = []
    for name in header:
        col = spec.columns[name]
        base = col.type_name.split("(")[0]
        if base == "uuid":
            out.append(_uuid)
        elif base in ("json", "jsonb"):
            out.append(_json(spec.shape(name), spec.limit(name)))
        elif base in _INT_RANGES:
            out.append(_integer(base))
        elif base in ("numeric", "real", "double precision"):
            out.append(_numeric)
        elif base == "boolean":
            out.append(_boolean)
        else:
            out.append(_text(spec.limit(name)))
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
        return Reject(record.line, "", record.error, record.raw)
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
                cut(value),
            )
        if "\x00" in value:
            return Reject(record.line, name, "contains a NUL byte", record.raw, cut(value))
        column = spec.columns[name]
        if value == "":
            if column.not_null and not column.has_default:
                return Reject(record.line, name, "is empty but required", record.raw)
            continue
        if column.not_null and column.type_name == "text" and not value.strip():
            return Reject(record.line, name, "is blank but required", record.raw, cut(value))
        if validate is not None:
            problem = validate(value)
            if problem:
                return Reject(record.line, name, problem, record.raw, cut(value))
    return None
