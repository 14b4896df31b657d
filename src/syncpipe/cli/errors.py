"""The CLI's single error boundary: exceptions become one line on stderr and an exit code."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from syncpipe.errors import EXIT_FAILED, EXIT_UNAVAILABLE, SyncpipeError

if TYPE_CHECKING:
    from syncpipe.cli.context import AppContext

EXIT_INTERRUPTED = 130


@contextmanager
def cli_errors(app: AppContext) -> Iterator[None]:
    """Turn domain and database errors into a clear sentence and DESIGN.md's exit codes."""
    from syncpipe.logs import get_logger
    from syncpipe.redact import redact

    log = get_logger("syncpipe.cli")
    try:
        yield
    except typer.Exit:
        raise
    except SyncpipeError as exc:
        _fail(app, str(exc), exc.exit_code, exc)
    except KeyboardInterrupt:
        _fail(app, "Interrupted; work in progress was rolled back.", EXIT_INTERRUPTED, None)
    except Exception as exc:
        code, message = _classify(exc)
        log.error("command.crashed", error=redact(str(exc)), exc_info=app.verbose > 0)
        _fail(app, message, code, exc)


def _classify(exc: Exception) -> tuple[int, str]:
    from syncpipe.redact import redact

    try:
        import psycopg
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover
        return EXIT_FAILED, f"{type(exc).__name__}: {redact(str(exc))}"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        first = redact(str(exc)).strip().splitlines()[0]
        return EXIT_FAILED, (
            f"A statement was canceled ({first}); if it was the statement timeout, raise "
            "SYNCPIPE_STATEMENT_TIMEOUT."
        )
    if isinstance(exc, PoolTimeout):
        return EXIT_UNAVAILABLE, "No database connection became available in time."
    if isinstance(exc, psycopg.OperationalError):
        first = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else "connection lost"
        return EXIT_UNAVAILABLE, f"Lost the database connection: {first}"
    if isinstance(exc, psycopg.Error):
        first = redact(str(exc)).strip().splitlines()[0]
        return EXIT_FAILED, f"Database error: {first}"
    return EXIT_FAILED, (
        f"Unexpected error: {type(exc).__name__}: {redact(str(exc))} "
        "(run with --verbose for the traceback)"
    )


def _fail(app: AppContext, message: str, code: int, exc: BaseException | None) -> None:
    from syncpipe.logs import get_logger
    from syncpipe.redact import redact

    message = redact(message)
    get_logger("syncpipe.cli").debug("command.failed", error=message, exit_code=code)
    if app.verbose and exc is not None:
        app.console.print(
            redact("".join(traceback.format_exception(exc))), markup=False, highlight=False
        )
    app.console.print(f"[bold red]Error:[/] {_escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
