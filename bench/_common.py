"""Shared helpers for the benchmarks: scratch databases and timing."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ADMIN_DSN = os.environ.get(
    "SYNCPIPE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def dsn_for(dbname: str) -> str:
    """The admin DSN pointed at another database."""
    params = conninfo_to_dict(ADMIN_DSN)
    params["dbname"] = dbname
    return make_conninfo(**params)


@contextmanager
def scratch_database(prefix: str = "syncpipe_bench") -> Iterator[str]:
    """Create a throwaway database; yield its DSN; drop it."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield dsn_for(name)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def syncpipe(args: list[str], dsn: str | None, **env: str) -> float:
    """Run the real CLI in a subprocess; return its wall time; raise if it failed."""
    environment = {**os.environ, **env}
    if dsn:
        environment["SYNCPIPE_DATABASE_URL"] = dsn
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "syncpipe", *args], env=environment, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"syncpipe {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return elapsed


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """Median and all samples of ``runs`` calls."""
    samples = [fn() for _ in range(runs)]
    return statistics.median(samples), samples
