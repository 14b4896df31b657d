"""CSV byte scanning (batches, record spans, screening) and the parser, on nasty records."""

from __future__ import annotations

import csv
import io
import random

import pytest

from syncpipe.services.load import scan
from syncpipe.services.load.records import parse_records
from syncpipe.services.load.scan import (
    BatchReader,
    Screen,
    prefetch,
    record_at,
    record_span,
    strip_trailing_blank_lines,
    suspect_offsets,
)


def _records(rng: random.Random, n: int) -> list[list[str]]:
    out = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.1:
            text = f'multi\nline "quoted", {i}'
        elif kind < 0.2:
            text = "x" * rng.randint(1000, 20000)
        else:
            text = f"plain {i}"
        out.append([str(i), text, f'{{"k": "{i}, v"}}'])
    return out


@pytest.mark.parametrize("seed", range(8))
def test_batches_are_whole_records_and_lose_nothing(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concatenated batches equal the input; every batch parses into whole records; line
    numbers add up, whatever the block and batch sizes."""
    rng = random.Random(seed)
    monkeypatch.setattr(scan, "READ_SIZE", rng.choice([7, 64, 1000, 4096]))
    buf = io.StringIO()
    rows = _records(rng, 300)
    csv.writer(buf, lineterminator=rng.choice(["\n", "\r\n"])).writerows(rows)
    data = buf.getvalue().encode()
    reader = BatchReader(
        io.BytesIO(data),
        first_line=1,
        offset=0,
        target_rows=rng.randint(1, 40),
        max_batch_bytes=rng.choice([500, 10**6]),
    )
    got = list(reader)
    assert b"".join(b.data for b in got) == data
    parsed: list[list[str]] = []
    line = 1
    for b in got:
        assert b.first_line == line
        line += b.lines
        for rec in parse_records(b.data, b.first_line, "utf-8", 3):
            assert rec.error is None, (rec.line, rec.error)
            assert rec.fields is not None
            parsed.append(rec.fields)
    assert parsed == rows


def test_stray_quote_costs_one_line() -> None:
    """An unbalanced quote is cut off on its own and parsing resumes on the next line."""
    lines = [f"{i},name {i}\n".encode() for i in range(50)]
    lines[20] = b'20,"broken name\n'
    data = b"".join(lines)
    reader = BatchReader(io.BytesIO(data), first_line=2, offset=0, target_rows=5, max_bytes=200)
    records = [r for b in reader for r in parse_records(b.data, b.first_line, "utf-8", 2)]
    bad = [r for r in records if r.error]
    assert [(r.line, r.error) for r in bad] == [(22, "unterminated quoted field")]
    assert len([r for r in records if r.fields]) == 49


def test_record_span_skips_quoted_newlines() -> None:
    """The n-th record is found across quoted newlines."""
    data = b'1,a\n2,"b\nstill b"\n3,c\n'
    assert data[slice(*record_span(data, 2))] == b'2,"b\nstill b"\n'
    assert data[slice(*record_span(data, 3))] == b"3,c\n"
    assert record_span(data, 4) is None


def test_trailing_blank_lines_are_dropped_keeping_the_line_ending() -> None:
    """Blank lines at the end go; the last record keeps its own line ending."""
    assert strip_trailing_blank_lines(b"a\r\nb\r\n\r\n\r\n") == b"a\r\nb\r\n"
    assert strip_trailing_blank_lines(b"a\nb") == b"a\nb"
    assert strip_trailing_blank_lines(b"\n\n") == b""


def test_prefetch_passes_items_and_errors() -> None:
    """Items arrive in order; an error in the producer reaches the consumer."""
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))

    def broken():
        yield 1
        raise ValueError("boom")

    items = prefetch(broken())
    assert next(items) == 1
    with pytest.raises(ValueError, match="boom"):
        next(items)


def test_resumed_reader_skips_committed_ranges_and_keeps_line_numbers() -> None:
    """Ranges already loaded are read (hashed) but never handed out, and no batch crosses one;
    line numbers after a skipped range are still right."""
    lines = [f"{i},name {i}\n".encode() for i in range(100)]
    data = b"".join(lines)
    starts = [sum(len(x) for x in lines[:i]) for i in range(101)]
    skip = [(starts[10], starts[30], 20), (starts[50], starts[55], 5)]
    seen: list[bytes] = []
    reader = BatchReader(
        io.BytesIO(data), first_line=1, offset=0, target_rows=7, skip=skip, on_read=seen.append
    )
    got = list(reader)
    assert b"".join(seen) == data
    handed = b"".join(b.data for b in got)
    assert handed == data[: starts[10]] + data[starts[30] : starts[50]] + data[starts[55] :]
    for b in got:
        assert not (b.offset < starts[30] and b.end_offset > starts[10])
        first = int(b.data.split(b",", 1)[0])
        assert b.first_line == first + 1


def test_screens_flag_the_records_only_the_slow_path_can_judge() -> None:
    """The byte screens name the records they cannot clear; clean records are not flagged."""
    screen = Screen(member_emails=True)

    def flagged(data: bytes) -> list[bytes]:
        spans = {record_at(data, at) for at in suspect_offsets(data, screen)}
        return [data[slice(*span)] for span in sorted(spans)]

    clean = b'1,"[{""name"": ""A"", ""email"": ""a@x.com""}]"\n'
    assert suspect_offsets(clean, screen) == []
    assert flagged(clean + b"\\.\n" + clean) == [b"\\.\n"]
    long = b'2,"[{""email"": ""' + b"x" * 501 + b'""}]"\n'
    assert flagged(clean + long + clean) == [long]
    in_array = (
        b'3,"[{""emails"": [""a@x.com"", ""' + b"y" * 250 + b'\\""' + b"y" * 250 + b'""]}]"\n'
    )
    assert flagged(clean + in_array) == [in_array]
    short = b'4,"[{""email"": ""' + b"x" * 500 + b'""}]"\n'
    assert flagged(clean + short) == []
