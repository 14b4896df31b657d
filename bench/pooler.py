"""Benchmark: the merge through a transaction-mode PgBouncer against the same merge direct.

Usage: python bench/pooler.py [--persons 100000] [--pairs 3]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default the local server; needs Debian's pgbouncer)

Loads the generator's records once into a deployed template database (not timed), then, for
each pair, clones it twice and times `syncpipe merge` (the real CLI, a subprocess) on one clone
directly and on the other through PgBouncer (transaction mode, round robin over 4 server
connections, port 6432), alternating which goes first. Prints every pair and the median ratio
pooled / direct (target: <= 1.0 within noise), then `syncpipe verify` on the sample data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.pgbouncer import PgBouncer

from _common import ADMIN_DSN, dsn_for, median_of, scratch_database, syncpipe
from load import data_dir

SAMPLE = Path(__file__).resolve().parent.parent / "data"


def clone(template: str) -> str:
    name = f"syncpipe_bench_pool_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name


def drop(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()

    logs = str(Path(tempfile.gettempdir()) / "syncpipe-bench-logs")
    base = data_dir(args.persons, args.seed)
    bouncer = PgBouncer(ADMIN_DSN, "transaction", 6432)
    try:
        with scratch_database("syncpipe_bench_pool_tpl") as template_dsn:
            syncpipe(["deploy"], template_dsn, SYNCPIPE_LOGS_DIR=logs)
            syncpipe(["load", str(base)], template_dsn, SYNCPIPE_LOGS_DIR=logs)
            template = str(psycopg.conninfo.conninfo_to_dict(template_dsn)["dbname"])
            ratios = []
            for pair in range(args.pairs):
                direct_db, pooled_db = clone(template), clone(template)
                try:
                    targets = {
                        "direct": dsn_for(direct_db),
                        "pooled": bouncer.dsn(dsn_for(pooled_db)),
                    }
                    order = ["direct", "pooled"] if pair % 2 == 0 else ["pooled", "direct"]
                    seconds = {
                        name: syncpipe(["merge"], targets[name], SYNCPIPE_LOGS_DIR=logs)
                        for name in order
                    }
                finally:
                    drop(direct_db)
                    drop(pooled_db)
                ratio = seconds["pooled"] / seconds["direct"]
                ratios.append(ratio)
                print(
                    f"pair {pair + 1}: direct {seconds['direct']:.2f} s, through PgBouncer "
                    f"(transaction mode) {seconds['pooled']:.2f} s, ratio {ratio:.3f}",
                    flush=True,
                )
            print(f"median ratio pooled / direct: {statistics.median(ratios):.3f}")
        with scratch_database("syncpipe_bench_verify") as dsn:
            syncpipe(
                ["deploy", "--full"], dsn, SYNCPIPE_LOGS_DIR=logs, SYNCPIPE_DATA_DIR=str(SAMPLE)
            )
            verify, samples = median_of(5, lambda: syncpipe(["verify"], dsn))
            print(
                f"syncpipe verify on the sample database, CLI wall: median {verify:.3f} s "
                f"({', '.join(f'{s:.2f}' for s in samples)})"
            )
    finally:
        bouncer.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
