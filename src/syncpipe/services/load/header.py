"""The header check: the first line of a file against its table, before any row is written.

``check_header`` returns a value, never raises: either a ``Header`` (the column names in file
order, the key's positions, one validator per column) or a ``HeaderProblem`` (one sentence that
quotes at most a cut excerpt of the file).
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass

from syncpipe.services.load.cut import cut, cut_list
from syncpipe.services.load.records import Validator, validators_for
from syncpipe.services.load.tables import TableSpec


@dataclass(frozen=True)
class Header:
    """A header that matches its table."""

    names: list[str]
    key_index: list[int]
    validators: list[Validator | None]
    #: bytes of the header line (the body starts there)
    size: int


@dataclass(frozen=True)
class HeaderProblem:
    """Why a file's first line cannot be loaded."""

    message: str


def check_header(first: bytes, spec: TableSpec, codec: str) -> Header | HeaderProblem:
    """Judge the first line of a file (with its line ending) against ``spec``."""
    if not first:
        return HeaderProblem("is empty (no header row)")
    raw = first.removeprefix(codecs.BOM_UTF8) if codec == "utf-8" else first
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        return HeaderProblem(
            f"line 1 (the header) is not {codec} text (byte 0x{raw[exc.start]:02X}); "
            "is this a CSV file? If it is, pass --encoding"
        )
    if "\x00" in text:
        return HeaderProblem("line 1 holds NUL bytes; this does not look like a CSV file")
    try:
        names = next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration):
        return HeaderProblem(f"line 1 (the header) is not valid CSV: {cut(text)}")
    header = [n.strip().lower() for n in names]
    unknown = [n for n in header if n not in spec.loadable]
    missing = [n for n in spec.required if n not in header]
    dupes = sorted({n for n in header if header.count(n) > 1})
    problems = []
    if unknown:
        problems.append(f"{len(unknown):,} unknown column(s) {cut_list(unknown)}")
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if dupes:
        problems.append(f"repeated column(s) {cut_list(dupes)}")
    if problems:
        return HeaderProblem(
            f"line 1 (the header) does not match {spec.name}: {'; '.join(problems)} "
            f"(expected: {', '.join(spec.loadable)})"
        )
    return Header(
        names=header,
        key_index=[header.index(k) for k in spec.primary_key],
        validators=validators_for(spec, header),
        size=len(first),
    )
