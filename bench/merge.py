"""Benchmark the member pipeline + merge batch on ~1,000,000 new agents and ~100,000 team pages.

Usage: python bench/merge.py [--persons N] [--increment-share 0.01] [--keep]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server; data cached in bench/out/)

Deploys into a scratch database and loads the generator's files (not timed), then times, with
the real service behind `syncpipe merge`:
  1. the first run, end to end (member pipeline + merge batch, one transaction), with the time
     of every phase and the database's temporary-file bytes;
  2. a re-run with nothing new (member pipeline alone, and the whole merge command);
  3. an incremental run after loading a further 1% of records (new persons in new teams, and
     feed rows of known persons seen again in other teams) on top.
  4. `syncpipe report` (json and html) on the result.
Targets: <= 120 s end to end, re-run <= 1 s, 1% incremental <= 10 s (issue 4); report <= 5 s
(issue 5).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from _common import scratch_database, syncpipe
from load import data_dir
from syncpipe.db.database import Database
from syncpipe.services.deploy import DeployService
from syncpipe.services.load.loader import LoadService
from syncpipe.services.merge.service import MergeService
from syncpipe.settings import Settings


def temp_bytes(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def run_merge(settings: Settings, dsn: str) -> tuple[float, dict[str, Any], int]:
    before = temp_bytes(dsn)
    with Database(settings) as db:
        t0 = time.perf_counter()
        result = MergeService(settings, db).run(sample=0)
        elapsed = time.perf_counter() - t0
    time.sleep(0.6)  # statistics are flushed asynchronously
    return elapsed, result.to_dict(), temp_bytes(dsn) - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_333_333)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--increment-share", type=float, default=0.01)
    args = parser.parse_args()

    base = data_dir(args.persons, args.seed)
    increment = data_dir(max(100, round(args.persons * args.increment_share)), args.seed + 1)
    with scratch_database("syncpipe_bench_merge") as dsn:
        logs = Path(tempfile.gettempdir()) / "syncpipe-bench-logs"
        settings = Settings(_env_file=None, database_url=dsn, logs_dir=logs)  # type: ignore[call-arg]
        with Database(settings) as db:
            DeployService(settings, db).run()
            t0 = time.perf_counter()
            loaded = LoadService(settings, db).load([base])
            print(
                f"loaded {loaded.totals()['inserted']:,} rows in "
                f"{time.perf_counter() - t0:.1f} s (not part of the figures)",
                flush=True,
            )

        first, counts, temp = run_merge(settings, dsn)
        merge = counts["merge"]
        print(f"\nfirst run (pipeline + merge, one transaction): {first:.1f} s")
        print(
            f"  members {counts['pipeline'].get('inserted', 0):,}; records matched "
            f"{merge.get('pending', 0):,}; agents {merge.get('agents_created', 0):,}; "
            f"review items {merge.get('review_items_added', 0):,}"
        )
        print(f"  temp files written by the database: {temp / 1e6:,.0f} MB")
        for phase, seconds in counts["phases"].items():
            print(f"  {phase:<18} {seconds:7.1f} s")

        with psycopg.connect(dsn) as conn:
            t0 = time.perf_counter()
            conn.execute("SELECT public.run_unified_member_pipeline('{}')")
            conn.commit()
            pipeline_rerun = time.perf_counter() - t0
        rerun, _, _ = run_merge(settings, dsn)
        print(
            f"\nre-run, nothing new: member pipeline {pipeline_rerun:.2f} s; "
            f"whole merge command {rerun:.2f} s"
        )

        with Database(settings) as db:
            added = LoadService(settings, db).load([increment]).totals()["inserted"]
        inc, inc_counts, _ = run_merge(settings, dsn)
        print(
            f"\nincremental (+{added:,} rows loaded): {inc:.1f} s; records matched "
            f"{inc_counts['merge'].get('pending', 0):,}, agents created "
            f"{inc_counts['merge'].get('agents_created', 0):,}, joined "
            f"{inc_counts['merge'].get('agents_joined', 0):,}"
        )
        for phase, seconds in inc_counts["phases"].items():
            print(f"  {phase:<18} {seconds:7.2f} s")

        # issue 5: `syncpipe report` reads aggregates, <= 5 s on this database
        for fmt in ("json", "html"):
            out = Path(tempfile.gettempdir()) / f"syncpipe-bench-report.{fmt}"
            seconds = syncpipe(["report", "--format", fmt, "--output", str(out)], dsn)
            print(f"\nsyncpipe report --format {fmt} (whole command): {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
