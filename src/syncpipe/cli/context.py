"""Per-invocation state shared by the commands: settings, consoles, logging, the database."""

from __future__ import annotations

import os
import sys
import uuid
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console

    from syncpipe.db.database import Database
    from syncpipe.settings import Settings


class AppContext:
    """Built by the callback; settings and the database are created on first use."""

    def __init__(
        self, *, env: str | None, log_format: str | None, verbose: int, command: str = ""
    ) -> None:
        self.env = env
        self.log_format_option = log_format
        self.verbose = verbose
        self.run_id = uuid.uuid4().hex[:12]
        self._settings: Settings | None = None
        self._db: Database | None = None
        self._console: Console | None = None
        self._out: Console | None = None
        self.command = command
        self.log_format: Literal["console", "json"] = "console"
        self._file_logging = False
        self._configure_logging(logs_dir=None)

    # consoles: diagnostics on stderr, results on stdout
    @property
    def console(self) -> Console:
        """The stderr console (logs, progress, errors)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, soft_wrap=True)
        return self._console

    @property
    def out(self) -> Console:
        """The stdout console (results only)."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(file=sys.stdout, soft_wrap=True)
            if not self._out.is_terminal and "COLUMNS" not in os.environ:
                self._out.width = 120  # pipes and CI logs: wide enough for the tables
        return self._out

    @property
    def settings(self) -> Settings:
        """Settings for ``--env`` (ConfigError, exit 2, when they are wrong)."""
        if self._settings is None:
            from syncpipe.settings import load_settings

            self._settings = load_settings(self.env)
            self._configure_logging(logs_dir=self._settings.logs_dir)
        return self._settings

    @property
    def db(self) -> Database:
        """The shared database (pool opened lazily)."""
        if self._db is None:
            from syncpipe.db.database import Database

            self._db = Database(self.settings, on_embedded=self._announce_embedded)
        return self._db

    @property
    def show_progress(self) -> bool:
        """Progress bars only for a person on a terminal."""
        return self.console.is_terminal

    def apply_globals(self, *, env: str | None, log_format: str | None, verbose: int) -> None:
        """Global options typed after the command (``syncpipe deploy --env staging``)."""
        if self._settings is not None or self._db is not None:  # pragma: no cover - by design
            raise RuntimeError("global options must be applied before settings are read")
        if env is not None:
            self.env = env
        if log_format is not None:
            self.log_format_option = log_format
        self.verbose += verbose
        self._configure_logging(logs_dir=None)

    def ensure_file_logging(self) -> None:
        """Make sure the log files are written (a failure is recorded even before settings)."""
        if self._file_logging:
            return
        try:
            _ = self.settings  # configures the files under SYNCPIPE_LOGS_DIR
        except Exception:
            from pathlib import Path

            # the settings are what failed: log where the default (or the raw variable) says
            self._configure_logging(logs_dir=Path(os.environ.get("SYNCPIPE_LOGS_DIR") or "logs"))

    def _announce_embedded(self, data_dir: object) -> None:
        message = (
            f"Using the embedded PostgreSQL in {data_dir} (no SYNCPIPE_DATABASE_URL set); "
            "it stops when the command ends."
        )
        if self.log_format == "json":
            from syncpipe.logs import get_logger

            get_logger("syncpipe.db").info("embedded.in_use", data_dir=str(data_dir), note=message)
        else:
            self.console.print(message, highlight=False)

    def close(self) -> None:
        """Close the pool and stop the embedded server."""
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except Exception as exc:  # after the command: say so, but keep its exit code
                from syncpipe.core.redact import redact
                from syncpipe.logs import get_logger

                get_logger("syncpipe.cli").warning("db.close_failed", error=redact(str(exc)))

    def _configure_logging(self, *, logs_dir: object) -> None:
        import structlog

        from syncpipe.logs import configure_logging, resolve_format

        requested = self.log_format_option or (
            self._settings.log_format if self._settings else "auto"
        )
        fmt: Literal["console", "json"] = resolve_format(requested, self.console)
        self.log_format = fmt
        from pathlib import Path

        self._file_logging = isinstance(logs_dir, Path)

        configure_logging(
            fmt=fmt,
            verbose=self.verbose,
            console=self.console,
            logs_dir=logs_dir if isinstance(logs_dir, Path) else None,
        )
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            run_id=self.run_id, env=self.env or "dev", command=self.command
        )
