"""Cut a CSV byte stream into batches of whole records without parsing it.

The fast path sends each batch to PostgreSQL's COPY as it is, so the cut must fall between
records: on a newline with an even number of double quotes before it in the batch (a quoted
field may hold newlines; an escaped quote is two quotes, which keeps the parity). Only
``bytes.count`` and ``bytes.rfind`` run per batch, never per row, and the file is read in
blocks, so memory stays flat whatever the file size.

A stray quote flips the parity for the rest of the file. The batcher then grows the window up
to ``max_bytes`` looking for a boundary; when there is none, the batch is the single bad line,
which the server refuses and the slow path rejects, and the next batch starts clean.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

READ_SIZE = 4 * 1024 * 1024


@dataclass
class Batch:
    """Whole records (usually), and where they start in the file."""

    data: bytes
    first_line: int  # physical line number (1-based) of the first byte
    offset: int  # byte offset of the first byte in the file
    lines: int  # number of newline characters in data
    suspect: bool = False  # screening found something only the slow path can judge

    @property
    def end_offset(self) -> int:
        """Byte offset just after the batch."""
        return self.offset + len(self.data)


class BatchReader:
    """Iterate over batches of about ``target_rows`` records from a binary stream."""

    def __init__(
        self,
        stream: Any,
        *,
        first_line: int,
        offset: int,
        target_rows: int,
        max_bytes: int = 32 * 1024 * 1024,
        max_batch_bytes: int = 16 * 1024 * 1024,
        on_read: Callable[[bytes], object] | None = None,
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
        self._on_read = on_read

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

    def _next(self) -> Batch | None:
        target = min(int(self.target_rows * self._avg_row_bytes) + 1, self.max_batch_bytes)
        self._fill(target)
        if not self._buffer:
            return None
        if self._eof and len(self._buffer) <= target:
            cut = len(self._buffer)
        else:
            cut = self._find_cut(target)  # may read more into the buffer
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
        limit = target
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
                return len(buf) if first < 0 else first + 1
            limit = min(limit * 2, self.max_bytes)


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
