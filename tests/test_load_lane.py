"""The lane of a file's batches (services/load/lane.py), with real threads: a batch that needs
the file alone goes after every batch handed out before it, begun or not."""

from __future__ import annotations

import threading
import time

from syncpipe.services.load.lane import Lane


def _exclusive(lane: Lane, seq: int, order: list[int]) -> threading.Thread:
    def run() -> None:
        lane.start(seq)
        with lane.exclusive(seq):
            order.append(seq)
        lane.finish(seq)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_exclusive_batch_waits_for_an_earlier_one_not_yet_begun() -> None:
    """Batch 0 handed to a stream that has not begun it, batch 1 asking for the lane: 1 waits
    for 0, and 0 may begin meanwhile. (Batch 1 went first: a later row of a repeated key was
    written and the first rejected as its repeat.)"""
    lane, order = Lane(), []
    lane.dispatch(0)
    lane.dispatch(1)
    later = _exclusive(lane, 1, order)
    time.sleep(0.3)
    assert order == []  # (waiting for batch 0)
    lane.start(0)  # (not kept waiting by a batch that waits for it)
    order.append(0)
    lane.finish(0)
    later.join(5)
    assert order == [0, 1]


def test_a_later_batch_does_not_begin_while_an_earlier_one_waits_for_the_lane() -> None:
    lane, order = Lane(), []
    for seq in (0, 1, 2):
        lane.dispatch(seq)
    lane.start(0)
    waiting = _exclusive(lane, 1, order)
    time.sleep(0.2)
    begun = threading.Event()

    def third() -> None:
        lane.start(2)
        begun.set()
        lane.finish(2)

    threading.Thread(target=third, daemon=True).start()
    time.sleep(0.3)
    assert not begun.is_set()  # (batch 1 waits for the lane)
    lane.finish(0)
    waiting.join(5)
    assert order == [1]
    assert begun.wait(5)
