"""CSV byte scanning: cut a stream into batches of whole records, find a record's span, and
screen a batch for what only the slow path can judge, all without parsing rows.

The fast path sends each batch to PostgreSQL's COPY as it is, so the cut must fall between
records: on a newline with an even number of double quotes before it in the batch (a quoted
field may hold newlines; an escaped quote is two quotes, which keeps the parity). Only
``bytes.count`` and ``bytes.rfind`` run per batch, never per row, and the file is read in
blocks, so memory stays flat whatever the file size.

A stray quote flips the parity for the rest of the file. The batcher then grows the window up
to ``max_bytes`` looking for a boundary; when there is none, the batch is the single bad line,
which the server refuses and the slow path rejects, and the next batch starts clean. A line
longer than ``max_bytes`` (no newline in the window at all) is one batch marked ``overlong``:
its first bytes kept for the reject, the rest of the line read (and hashed) but not kept, so
that no part of it is ever taken for a record of its own.

A resumed load passes the byte ranges its earlier run committed: the reader still reads (and
so hashes) them, but never hands them out, and never cuts a batch across one.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

READ_SIZE = 4 * 1024 * 1024
#: The longest line (record) the reader takes; a longer one is rejected whole.
MAX_LINE_BYTES = 32 * 1024 * 1024
#: Of a line too long to load, the bytes kept for its reject.
OVERLONG_KEPT = 1024


@dataclass
class Batch:
    """Whole records (usually), and where they start in the file."""

    data: bytes
    first_line: int  # physical line number (1-based) of the first byte
    offset: int  # byte offset of the first byte in the file
    lines: int  # number of newline characters in data
    suspect: bool = False  # screening found something only the slow path can judge
    suspects: list[int] = field(default_factory=list)  # offsets in data of such records
    #: the bytes of one line longer than the reader takes (``data`` holds its start only)
    overlong: int = 0

    @property
    def end_offset(self) -> int:
        """Byte offset just after the batch."""
        return self.offset + (self.overlong or len(self.data))


class BatchReader:
    """Iterate over batches of about ``target_rows`` records from a binary stream."""

    def __init__(
        self,
        stream: Any,
        *,
        first_line: int,
        offset: int,
        target_rows: int,
        max_bytes: int = MAX_LINE_BYTES,
        max_batch_bytes: int = 16 * 1024 * 1024,
        on_read: Callable[[bytes], object] | None = None,
        skip: Iterable[tuple[int, int, int]] = (),
        ramp: Iterable[int] = (),
        end: int | None = None,
        streams: int = 1,
    ) -> None:
        self.stream = stream
        self.line = first_line
        self.offset = offset
        self.target_rows = max(1, target_rows)
        self.max_bytes = max_bytes
        self.max_batch_bytes = max_batch_bytes
        self._buffer = b""
        self._eof = False
        self._avg_row_bytes = 512.0
        self._sampled = False
        self._on_read = on_read
        # (start offset, end offset, lines) of ranges already loaded, in file order
        self._skips = sorted(s for s in skip if s[1] > offset)
        # caps (bytes) of the first batches: small ones get every stream going at once
        self._ramp = list(ramp)
        # near the end of the file (its size, ``end``), batches of a share of what is left,
        # so that the ``streams`` consuming them finish together
        self._end = end
        self._streams = max(1, streams)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            batch = self._next()
            if batch is None:
                return
            yield batch

    def _fill(self, want: int) -> None:
        while not self._eof and len(self._buffer) < want:
            block = self.stream.read(max(READ_SIZE, want - len(self._buffer)))
            if not block:
                self._eof = True
            else:
                if self._on_read is not None:
                    self._on_read(block)
                self._buffer += block

    def _drop(self, size: int) -> None:
        while size > 0:
            self._fill(min(size, READ_SIZE))
            if not self._buffer:
                return
            taken = min(size, len(self._buffer))
            self._buffer = self._buffer[taken:]
            size -= taken

    def _next(self) -> Batch | None:
        while self._skips and self._skips[0][0] <= self.offset:
            _start, end, lines = self._skips.pop(0)
            self._drop(end - self.offset)
            self.offset = end
            self.line += lines
        stop = self._skips[0][0] - self.offset if self._skips else None
        if not self._sampled:
            # The first batch is sized from a sample of the file, not from a guess.
            self._sampled = True
            self._fill(min(READ_SIZE, self.max_batch_bytes))
            sample = self._buffer[: min(len(self._buffer), 1024 * 1024)]
            if sample.count(b"\n"):
                self._avg_row_bytes = len(sample) / sample.count(b"\n")
        target = min(int(self.target_rows * self._avg_row_bytes) + 1, self.max_batch_bytes)
        if self._ramp:
            target = min(target, self._ramp.pop(0))
        if self._end is not None and self._streams > 1:
            share = (self._end - self.offset) // self._streams
            target = min(target, max(share, READ_SIZE // 4))
        if stop is not None:
            target = min(target, stop)
        self._fill(target)
        if not self._buffer:
            return None
        if stop is not None and target == stop and len(self._buffer) >= stop:
            cut = stop  # an already loaded range starts here: a record boundary
        elif self._eof and len(self._buffer) <= target:
            cut = len(self._buffer)
        else:
            cut = self._find_cut(target)  # may read more into the buffer
            if cut < 0:
                return self._overlong_line()
            if stop is not None:
                cut = min(cut, stop)
        buf = self._buffer
        data = buf[:cut]
        self._buffer = buf[cut:]
        lines = data.count(b"\n")
        batch = Batch(data=data, first_line=self.line, offset=self.offset, lines=lines)
        self.line += lines
        self.offset += len(data)
        if lines:
            self._avg_row_bytes = 0.7 * self._avg_row_bytes + 0.3 * (len(data) / lines)
        return batch

    def _find_cut(self, target: int) -> int:
        """Index just after a newline near ``target`` with even quote parity.

        Grows the window (a record may hold newlines) up to ``max_bytes``; if no record
        boundary shows up by then, the batch is just the first line, which the slow path
        rejects on its own (a stray quote), and the next batch starts clean.
        """
        limit = max(target, 1)  # (a window of 0 bytes never grew: the reader spun for ever)
        while True:
            self._fill(limit + 1)
            buf = self._buffer
            end = min(limit, len(buf))
            pos = buf.rfind(b"\n", 0, end)
            if pos >= 0:
                quotes = buf.count(b'"', 0, pos)
                while quotes % 2:
                    prev = buf.rfind(b"\n", 0, pos)
                    if prev < 0:
                        break
                    quotes -= buf.count(b'"', prev, pos)
                    pos = prev
                if quotes % 2 == 0:
                    return pos + 1
            if self._eof and end >= len(buf):
                return len(buf)
            if limit >= self.max_bytes:
                first = buf.find(b"\n")
                if first >= 0:
                    return first + 1
                return len(buf) if self._eof else -1  # -1: a line longer than max_bytes
            limit = min(limit * 2, self.max_bytes)

    def _overlong_line(self) -> Batch:
        """The line at the buffer's start, longer than ``max_bytes``: a batch of its first
        bytes that says how long it is; the rest is read through its newline (or the end of the
        file) and dropped."""
        head = self._buffer[:OVERLONG_KEPT]
        size = 0
        lines = 0
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                size += newline + 1
                lines = 1
                self._buffer = self._buffer[newline + 1 :]
                break
            size += len(self._buffer)
            self._buffer = b""
            if self._eof:
                break
            self._fill(READ_SIZE)
            if not self._buffer:
                break
        batch = Batch(
            data=head, first_line=self.line, offset=self.offset, lines=lines, overlong=size
        )
        self.line += lines
        self.offset += size
        return batch


def record_span(data: bytes, record: int) -> tuple[int, int] | None:
    """Byte span of the ``record``-th CSV record of ``data`` (newlines inside quotes skipped)."""
    pos, start, current, quotes = 0, 0, 1, 0
    size = len(data)
    while pos < size:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        quotes += data.count(b'"', pos, end)
        pos = end
        if quotes % 2 == 0:
            if current == record:
                return start, end
            current += 1
            start = end
    return None


def count_records(data: bytes) -> int:
    """The CSV records of ``data``: its newlines outside quotes (``""`` inside a quoted value
    toggles twice), plus a last record with no newline after it."""
    if b'"' in data:
        records = sum(part.count(b"\n") for part in data.split(b'"')[::2])
    else:
        records = data.count(b"\n")
    return records + (0 if data.endswith(b"\n") or not data.strip() else 1)


def strip_trailing_blank_lines(data: bytes) -> bytes:
    """Drop blank lines at the end of the file, keeping the last record's line ending."""
    stripped = data.rstrip(b"\r\n")
    if not stripped:
        return b""
    tail = data[len(stripped) :]
    for ending in (b"\r\n", b"\n", b"\r"):
        if tail.startswith(ending):
            return stripped + ending
    return stripped


_END_MARK = re.compile(rb"(?:^|\n)\\\.\r?\n")
#: An "email" or "emails" member field (as CSV-quoted JSON) holding a string of more than
#: ``MEMBER_EMAIL_CHARS`` characters, possibly after other strings of an array. It starts
#: with a literal, so the scan runs at memchr speed and fails within a few bytes of an
#: ordinary e-mail. (Escaped quotes are blanked out first, so they do not end a string.)
MEMBER_EMAIL_CHARS = 500
_LONG_MEMBER_EMAIL = re.compile(
    rb'""emails?""\s*:\s*(?:\[(?:\s*""[^"]*"",)*\s*)?""[^"]{'
    + str(MEMBER_EMAIL_CHARS + 1).encode()
    + rb"}"
)


@dataclass(frozen=True)
class Screen:
    """What the byte screens look for in a table's CSV bytes (the rest the server checks)."""

    #: member objects whose e-mails are limited in length (team pages)
    member_emails: bool


def suspect_offsets(data: bytes, screen: Screen) -> list[int]:
    """Offsets (sorted) of records only the slow path can judge, found without parsing: a line
    holding just a backslash and a period (it ends COPY data early), and a member e-mail longer
    than ``MEMBER_EMAIL_CHARS`` (the server has no cheap way to see it). A flagged record that
    is fine loads through the slow path all the same."""
    found: list[int] = []
    if data.startswith(b"\\.") or b"\n\\." in data:
        found += [
            m.start() + (data[m.start() : m.start() + 1] == b"\n") for m in _END_MARK.finditer(data)
        ]
    if screen.member_emails:
        # (escaped quotes are rare: the copy is made only when there is one)
        text = data.replace(b'\\""', b"xxx") if b'\\""' in data else data  # offsets hold
        found += [m.start() for m in _LONG_MEMBER_EMAIL.finditer(text)]
    return sorted(set(found))


def screen_batch(batch: Batch, screen: Screen) -> Batch:
    """Note the records of the batch only the slow path can judge."""
    batch.suspects = suspect_offsets(batch.data, screen)
    batch.suspect = bool(batch.suspects)
    return batch


def record_at(data: bytes, offset: int) -> tuple[int, int]:
    """Byte span of the CSV record of ``data`` that holds byte ``offset``."""
    pos, start, quotes = 0, 0, 0
    size = len(data)
    while pos < size:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        quotes += data.count(b'"', pos, end)
        pos = end
        if quotes % 2 == 0:
            if start <= offset < end:
                return start, end
            start = end
    return start, size


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Produce ``items`` on a background thread, ``depth`` ahead of the consumer.

    Exceptions raised while producing are re-raised in the consumer; if the consumer stops
    early, the producer is told to stop and the thread ends.
    """
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the consumer
            put("error", exc)

    thread = threading.Thread(target=produce, name="syncpipe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)
