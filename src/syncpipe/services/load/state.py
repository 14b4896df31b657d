"""The explicit state of one file's load, and of each batch in flight.

``FileContext`` is what every batch of a file shares and never changes once the load starts
(the file, its table, header, target statements, ledger id). ``FileMode`` is the one thing that
does change: whether batches still try the direct COPY first. ``BatchWork`` is one batch: its
bytes and place in the file, and what it did (counts, rejects, transaction ids), committed
with it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from syncpipe.services.load.header import Header
from syncpipe.services.load.ledger import BatchRow
from syncpipe.services.load.records import Reject
from syncpipe.services.load.scan import Batch
from syncpipe.services.load.tables import TableSpec
from syncpipe.services.load.upsert import Target


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
