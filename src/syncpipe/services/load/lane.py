"""The lane: how a file's batches share the database when several streams load it at once.

Clean batches COPY in parallel, one transaction each, in any order. A batch that needs more (a
refused row whose good neighbours must be upserted, a key that exists already) takes the
exclusive lane: it waits until every earlier batch has finished and no other batch is writing,
and no new batch starts until it is done. So a key repeated in the file is always judged
against everything before it, and two streams never wait on each other inside the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LaneAborted(Exception):
    """Another stream of the file failed; this one stops."""


class Lane:
    """Start, exclusive and finish of the batches of one file (by sequence number)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        #: batches handed to the streams and not finished (begun or not)
        self._unfinished: set[int] = set()
        #: batches a stream has begun
        self._started: set[int] = set()
        self._waiting: set[int] = set()
        self._exclusive = False
        self.failure: BaseException | None = None

    def _check(self) -> None:
        if self.failure is not None:
            raise LaneAborted from self.failure

    def dispatch(self, seq: int) -> None:
        """The batch is handed to the streams: an exclusive batch after it waits for it from
        now on, not from when a stream begins it. (A batch a stream had taken but not begun
        did not count: a later one could take the lane first.)"""
        with self._cv:
            self._unfinished.add(seq)

    def start(self, seq: int) -> None:
        """Wait until the batch may start writing: not while another holds the lane, nor while
        an earlier one waits for it (one that waits for this batch cannot be kept waiting)."""
        with self._cv:
            while self._exclusive or (self._waiting and min(self._waiting) < seq):
                self._check()
                self._cv.wait(0.5)
            self._check()
            self._unfinished.add(seq)
            self._started.add(seq)

    @contextmanager
    def exclusive(self, seq: int) -> Iterator[None]:
        """Hold the file alone: every earlier batch finished, no other batch writing."""
        with self._cv:
            self._waiting.add(seq)
            self._cv.notify_all()
            while not self._ready(seq):
                self._check()
                self._cv.wait(0.5)
            self._check()
            self._waiting.discard(seq)
            self._exclusive = True
        try:
            yield
        finally:
            with self._cv:
                self._exclusive = False
                self._cv.notify_all()

    def _ready(self, seq: int) -> bool:
        if self._exclusive or min(self._waiting) != seq or min(self._unfinished) != seq:
            return False
        running = self._started - self._waiting - {seq}
        return not running

    def finish(self, seq: int) -> None:
        """The batch is committed (or abandoned)."""
        with self._cv:
            self._unfinished.discard(seq)
            self._started.discard(seq)
            self._cv.notify_all()

    def fail(self, exc: BaseException) -> None:
        """Stop every stream of the file."""
        with self._cv:
            if self.failure is None:
                self.failure = exc
            self._cv.notify_all()
