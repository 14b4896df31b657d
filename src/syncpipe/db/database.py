"""One connection pool per process, shared by every service, on the configured DSN or the
embedded server. Connection failures become one sentence naming host and port, never the
password."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncpipe.core.dsn import DsnInfo, describe_dsn
from syncpipe.core.errors import ConfigError, ConnectError, SyncpipeError
from syncpipe.core.redact import redact
from syncpipe.core.timeouts import postgres_ms
from syncpipe.db.errors import Where, connect_error, first_line, is_connection_lost, lost_error
from syncpipe.logs import get_logger

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    from syncpipe.db.embedded import EmbeddedServer
    from syncpipe.settings import Settings

log = get_logger(__name__)

MIN_SERVER_VERSION = 150000


#: A client that vanished mid-transaction (its machine off, its network cut) is noticed by
#: the server within about two minutes, and its transaction, locks and load claim ended; the
#: server's defaults wait two hours or more (the operating system's keepalive). A few bytes a
#: minute on an idle connection; nothing on a Unix socket. Per transaction, like the rest.
KEEPALIVE = {
    "tcp_keepalives_idle": "60",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "6",
    "tcp_user_timeout": "120000",
}


class Database:
    """Lazily opened pool plus what is known about the server behind it."""

    def __init__(
        self, settings: Settings, *, on_embedded: Callable[[Path], None] | None = None
    ) -> None:
        self.settings = settings
        self._on_embedded = on_embedded
        self._embedded: EmbeddedServer | None = None
        self._pool: ConnectionPool[Any] | None = None
        self._dsn: str | None = None
        self._info: DsnInfo | None = None
        self.server_version = 0
        self.is_superuser = False
        self.peak_pool_use = 0

    # -- where ---------------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """The connection string in use (starts the embedded server if none is configured)."""
        if self._dsn is None:
            configured = self.settings.dsn
            if configured:
                self._dsn = configured
            else:
                from syncpipe.db.embedded import EmbeddedServer

                self._embedded = EmbeddedServer(self.settings.embedded_data_dir)
                self._dsn = self._embedded.start()
                log.info("embedded.started", data_dir=str(self._embedded.data_dir))
                if self._on_embedded is not None:
                    self._on_embedded(self._embedded.data_dir)
        return self._dsn

    @property
    def info(self) -> DsnInfo:
        """Host, port, database and user, safe to print."""
        if self._info is None:
            self._info = describe_dsn(self.dsn)
            if self._embedded is not None:
                self._info = DsnInfo(
                    host="embedded",
                    port=self._info.port,
                    dbname=self._info.dbname,
                    user=self._info.user,
                )
        return self._info

    @property
    def embedded_dir(self) -> Path | None:
        """The data folder of the embedded server, when that is what is in use."""
        return self._embedded.data_dir if self._embedded else None

    @property
    def target(self) -> str:
        """How messages name the database."""
        if self._embedded is not None:
            return f"the embedded PostgreSQL in {self._embedded.data_dir}"
        return self.info.target

    # -- connections ---------------------------------------------------------------------
    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every connection syncpipe opens."""
        kwargs: dict[str, Any] = {
            "connect_timeout": max(2, round(self.settings.connect_timeout)),
            "application_name": self.settings.application_name,
        }
        if self.settings.sslmode:
            kwargs["sslmode"] = self.settings.sslmode
        # No server-side prepared statements: a transaction-mode pooler may hand the next
        # transaction to a server connection that never saw them (and the cost is not
        # measurable next to syncpipe's statements).
        kwargs["prepare_threshold"] = None
        return kwargs

    def connect(self, **extra: Any) -> psycopg.Connection[Any]:
        """A new connection outside the pool (for work that must not share one)."""
        import psycopg

        try:
            conn = psycopg.connect(self.dsn, **{**self.connect_kwargs(), **extra})
        except psycopg.OperationalError as exc:
            raise self._explain(exc) from None
        return conn

    def open(self) -> None:
        """Check the server answers, then open the pool; ConnectError (exit 3) if it does not."""
        if self._pool is not None:
            return
        from psycopg_pool import ConnectionPool

        probe = self.connect()
        try:
            self.server_version = probe.info.server_version
            row = probe.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            self.is_superuser = bool(row and row[0])
        finally:
            probe.close()
        if self.server_version < MIN_SERVER_VERSION:
            raise ConfigError(
                f"PostgreSQL {_version_text(self.server_version)} at {self.target} is too old; "
                "syncpipe needs PostgreSQL 15 or newer."
            )
        pool: ConnectionPool[Any] = ConnectionPool(
            self.dsn,
            kwargs=self.connect_kwargs(),
            min_size=self.settings.pool_min_size,
            max_size=self.settings.pool_max_size,
            open=False,
            name="syncpipe",
            timeout=max(self.settings.connect_timeout, 30.0),
            check=ConnectionPool.check_connection,
        )
        try:
            pool.open(wait=True, timeout=self.settings.connect_timeout)
        except Exception as exc:
            pool.close()
            raise ConnectError(
                f"Cannot open a connection pool to {self.target}: {redact(str(exc))}."
            ) from None
        self._pool = pool
        log.debug(
            "db.pool_open",
            target=self.target,
            server_version=self.server_version,
            min_size=self.settings.pool_min_size,
            max_size=self.settings.pool_max_size,
        )

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The shared pool, opened on first use."""
        self.open()
        assert self._pool is not None
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a pooled connection; commit on success, roll back on error."""
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = self.pool
        try:
            with pool.connection() as conn:
                stats = pool.get_stats()
                in_use = stats.get("pool_size", 0) - stats.get("pool_available", 0)
                self.peak_pool_use = max(self.peak_pool_use, in_use)
                if not conn.autocommit:
                    self.begin(conn)
                yield conn
        except PoolTimeout:
            raise ConnectError(
                f"No connection to {self.target} became free in time "
                f"(pool of {self.settings.pool_max_size}; setting SYNCPIPE_POOL_MAX_SIZE)."
            ) from None
        except psycopg.OperationalError as exc:
            if is_connection_lost(exc):
                reason = first_line(exc)
                raise lost_error(self.target, f"({reason})", "nothing was kept", reason) from None
            raise

    def close(self) -> None:
        """Close the pool and stop the embedded server, if any."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        embedded, self._embedded = self._embedded, None
        if embedded is not None:
            embedded.stop()
            log.debug("embedded.stopped", data_dir=str(embedded.data_dir))

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------
    def begin(self, conn: psycopg.Connection[Any], **more: str) -> None:
        """Start a transaction on ``conn`` with syncpipe's settings, for that transaction only
        (and ``more`` settings, name -> value, set by the same statement: one round trip).

        Nothing is set for the session: through a pooler the next client of the same server
        connection would inherit it. Call it at the start of every transaction that runs
        user-sized work (the pool's ``connection()`` does, for its first transaction).
        """
        timeout = f"{postgres_ms(self.settings.statement_timeout)}ms"
        values: dict[str, str] = {"statement_timeout": timeout, **KEEPALIVE, **more}
        calls = ", ".join("set_config(%s, %s, true)" for _ in values)
        params = [item for pair in values.items() for item in pair]
        conn.execute(f"SELECT {calls}", params)

    def _explain(self, exc: Exception) -> SyncpipeError:
        info = self.info
        return connect_error(
            exc,
            Where(self.target, info.user, info.host, info.dbname, self.settings.connect_timeout),
        )


def _version_text(version: int) -> str:
    return f"{version // 10000}.{version % 10000}"
