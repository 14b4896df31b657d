"""Rich progress for a person on a terminal; nothing otherwise (logs carry the figures)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncpipe.cli.context import AppContext


@contextmanager
def file_progress(app: AppContext, label: str) -> Iterator[Callable[[int, int, str], None]]:
    """A bar of files done / files total; yields the callback services report to."""
    if not app.show_progress:
        yield lambda _done, _total, _name: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[name]}"),
        console=app.console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None, name="")

        def update(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, name=name)

        yield update


@contextmanager
def bytes_progress(
    app: AppContext, label: str
) -> Iterator[tuple[Callable[[int, int], None], Callable[[int], None]]]:
    """A bar by bytes with rows/s; yields (advance(bytes, rows), set_total(bytes))."""
    import threading

    if not app.show_progress:
        yield (lambda _b, _r: None), (lambda _t: None)
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    lock = threading.Lock()
    state = {"rows": 0}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[rows]:,} rows {task.fields[rate]}"),
        TimeRemainingColumn(),
        console=app.console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None, rows=0, rate="")

        def advance(nbytes: int, rows: int) -> None:
            with lock:
                state["rows"] += rows
                elapsed = progress.tasks[0].elapsed or 0.0
                rate = f"({state['rows'] / elapsed:,.0f}/s)" if elapsed > 0.5 else ""
                progress.update(task, advance=nbytes, rows=state["rows"], rate=rate)

        def set_total(total: int) -> None:
            progress.update(task, total=total)

        yield advance, set_total


@contextmanager
def phase_progress(app: AppContext, label: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming the current phase, with the time spent; yields phase(name)."""
    if not app.show_progress:
        yield lambda _name: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("[dim]{task.fields[phase]}"),
        TimeElapsedColumn(),
        console=app.console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None, phase="")

        def update(name: str) -> None:
            progress.update(task, phase=name.replace("_", " "))

        yield update
