"""The CLI's single error boundary.

Every command runs inside :func:`boundary` (the root group enters it around the whole
invocation): usage errors pass to Typer (exit 2, usage shown); syncpipe's own errors, driver
errors (translated by :mod:`syncpipe.db.errors`) and crashes become one sentence on stderr and
the exit code of the contract; every failure is also written to the log files.
"""

from __future__ import annotations

import os
import select
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from syncpipe.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_READER_GONE,
    EXIT_USAGE,
    SyncpipeError,
)

if TYPE_CHECKING:
    from syncpipe.cli.context import AppContext

__all__ = ["EXIT_INTERRUPTED", "boundary", "reader_gone", "stdout_identity"]


@contextmanager
def boundary(ctx: typer.Context) -> Iterator[None]:
    """Turn whatever leaves a command into one sentence and DESIGN.md's exit codes."""
    try:
        yield
    except typer.Exit as exc:
        if exc.exit_code not in (0, None):
            _record(ctx.obj, f"exit {exc.exit_code}", exc.exit_code)
        raise
    except typer.TyperException as exc:  # usage errors: Typer prints them with the usage line
        code = int(getattr(exc, "exit_code", EXIT_USAGE))
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        _record(ctx.obj, f"usage: {message}", code)
        raise
    except SyncpipeError as exc:
        _fail(ctx.obj, str(exc), exc.exit_code, exc)
    except KeyboardInterrupt:
        _fail(
            ctx.obj,
            "Interrupted: work not yet committed was rolled back, and committed work stays "
            "(`syncpipe report` shows the state).",
            EXIT_INTERRUPTED,
            None,
        )
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and reader_gone():
            raise typer.Exit(EXIT_READER_GONE) from None
        from syncpipe.db.errors import classify

        code, message = classify(exc)
        _fail(ctx.obj, message, code, exc)


def stdout_identity() -> tuple[int, int] | None:
    """What standard output is (device, inode), to tell later whether it was pointed elsewhere."""
    try:
        info = os.fstat(_stdout_fd())
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def reader_gone(started_as: tuple[int, int] | None = None) -> bool:
    """True when standard output was a pipe whose reader closed it (``syncpipe review | head``,
    ``syncpipe --help | head``); it then points to /dev/null, so that nothing more written or
    flushed at exit fails again. rich, which prints the help, points it there itself when it
    meets the closed pipe (and exits 1): ``started_as``, standard output's identity at start,
    tells that apart. The caller ends with EXIT_READER_GONE, quietly."""
    try:
        fd = _stdout_fd()
        now = stdout_identity()
        if started_as is not None and now != started_as and now == _identity(os.devnull):
            return True
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            return False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor, no poll (Windows)
        return False
    return True


def _stdout_fd() -> int:
    return sys.__stdout__.fileno() if sys.__stdout__ is not None else 1


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _record(app: AppContext | None, message: str, code: int) -> None:
    """Write a failed command to the log files (configuring them if settings can be read)."""
    if app is None:
        return
    try:
        app.ensure_file_logging()
        from syncpipe.logs import FILE_ONLY_LOGGER, get_logger

        # to the log files, and to stderr under --log-format json (not the console renderer)
        get_logger(FILE_ONLY_LOGGER).error(
            "command.failed", command=app.command, exit_code=code, error=message
        )
    except Exception as exc:  # pragma: no cover - recording a failure must never raise
        sys.stderr.write(f"syncpipe: could not record the failure in the logs: {exc}\n")


def _fail(app: AppContext | None, message: str, code: int, exc: BaseException | None) -> None:
    from rich.markup import escape

    from syncpipe.core.redact import redact

    message = redact(message)
    _record(app, message, code)
    console: Any = app.console if app is not None else _stderr_console()
    if app is not None and app.verbose and exc is not None:
        console.print(
            redact("".join(traceback.format_exception(exc))), markup=False, highlight=False
        )
    console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr, soft_wrap=True)
