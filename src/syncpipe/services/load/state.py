"""The explicit state of one file's load, and of each batch in flight.

``FileContext`` is what every batch of a file shares and never changes once the load starts
(the file, its table, header, target statements, ledger id). ``FileMode`` is the one thing that
does change: whether batches still try the direct COPY first. ``BatchWork`` is one batch: its
bytes and place in the file, and what it did (counts, rejects, transaction ids), committed
with it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from syncpipe.services.load.dupes import KeyLines
from syncpipe.services.load.header import Header
from syncpipe.services.load.ledger import BatchRow
from syncpipe.services.load.records import Reject
from syncpipe.services.load.scan import Batch
from syncpipe.services.load.tables import TableSpec
from syncpipe.services.load.upsert import Target


class BatchKeys:
    """The keys of a file's committed batches, each batch parsed once (``dupes.key_lines``),
    for the repeats of later batches to find their first rows in: the batches used most
    recently are kept, up to ``budget`` keys in all (about 100 MB)."""

    def __init__(self, budget: int = 500_000) -> None:
        self._budget = budget
        self._held = 0
        self._lock = threading.Lock()
        self._batches: OrderedDict[tuple[str, int], KeyLines] = OrderedDict()

    def get(self, start: tuple[str, int]) -> KeyLines | None:
        """The keys of the batch that starts at this offset (how they are compared, the
        offset), if kept."""
        with self._lock:
            keys = self._batches.get(start)
            if keys is not None:
                self._batches.move_to_end(start)
            return keys

    def put(self, start: tuple[str, int], keys: KeyLines) -> None:
        """Keep a batch's keys."""
        with self._lock:
            old = self._batches.pop(start, None)
            self._held += len(keys) - (len(old) if old is not None else 0)
            self._batches[start] = keys
            while self._held > self._budget and len(self._batches) > 1:
                _, dropped = self._batches.popitem(last=False)
                self._held -= len(dropped)


@dataclass(frozen=True)
class FileContext:
    """What all batches of one file share."""

    path: Path
    spec: TableSpec
    header: Header
    target: Target
    codec: str
    pg_encoding: str
    file_id: int | None  # None on a dry run: nothing is written
    dry_run: bool
    batch_keys: BatchKeys = field(default_factory=BatchKeys, compare=False)


class FileMode:
    """Direct COPY first (a first load), or straight to the upsert (keys exist already)."""

    def __init__(self) -> None:
        self._upsert = False
        self._lock = threading.Lock()

    @property
    def upsert(self) -> bool:
        """True once the file's keys were found in the table already."""
        with self._lock:
            return self._upsert

    def switch_to_upsert(self) -> None:
        """Every later batch goes straight to the upsert."""
        with self._lock:
            self._upsert = True


@dataclass
class BatchWork:
    """One batch: its bytes, its place in the file, and what it did."""

    seq: int
    batch: Batch
    row: BatchRow
    rejects: list[Reject] = field(default_factory=list)
    xids: set[str] = field(default_factory=set)
    #: the rows carry this transaction's own id (a whole-batch COPY): added to ``xids`` by
    #: the server when the ledger row is written, saving a round trip
    own_xid: bool = False
    slow_records: int = 0

    @classmethod
    def of(cls, seq: int, batch: Batch) -> BatchWork:
        """A fresh batch."""
        return cls(
            seq=seq,
            batch=batch,
            row=BatchRow(
                seq=seq,
                start=batch.offset,
                end=batch.end_offset,
                first_line=batch.first_line,
                lines=batch.lines,
            ),
        )

    def reset(self) -> None:
        """Forget what an attempt did (its transaction was rolled back)."""
        old = self.row
        self.row = BatchRow(old.seq, old.start, old.end, old.first_line, old.lines)
        self.rejects = []
        self.xids = set()
        self.own_xid = False
        self.slow_records = 0

    def reject(self, reject: Reject) -> None:
        """A row of this batch (or one it displaced) was not loaded."""
        self.rejects.append(reject)
