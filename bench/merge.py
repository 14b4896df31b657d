"""Benchmark the member pipeline + merge batch on ~1,000,000 new agents and ~100,000 team pages.

Usage: python bench/merge.py [--persons N] [--increment-share 0.01] [--keep] [--vs-splink]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server; data cached in bench/out/)

Deploys into a scratch database and loads the generator's files (not timed), then times, with
the real service behind `syncpipe merge`:
  1. the first run, end to end (member pipeline + merge batch, one transaction), with the time
     of every phase and the database's temporary-file bytes;
  2. a re-run with nothing new (member pipeline alone, and the whole merge command);
  3. an incremental run after loading a further 1% of records (new persons in new teams, and
     feed rows of known persons seen again in other teams) on top.
  (2 and 3 start after a CHECKPOINT, as a run hours after the last one would: otherwise they
  share the disk with the checkpoint the first run's writes start.)
  4. `syncpipe report` (json and html) on the result.
Targets: <= 120 s end to end, re-run <= 1 s, 1% incremental <= 10 s (issue 4; issue 16: <= 60 s,
<= 1 s, <= 5 s); report <= 5 s (issue 5). The re-run and the incremental run say which source
rows they read: every row ("all") or those changed since the last complete run ("changed").

--vs-splink (issue 16): the first run only, then Splink on the same generated files
(bench/peer_splink.py), side by side: wall time, peak memory and pairwise precision/recall
against truth.csv (syncpipe's automatic merges, review queue left open). syncpipe's memory is
the peak of the summed PSS, sampled from /proc every 0.2 s, of this database's backends and
their parallel workers plus this process (the client); RSS sums are printed too (they count
shared buffers once per backend). --keep leaves the database for bench/floor.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, os.path.dirname(__file__))
from _common import MemorySampler, postgres_backends, scratch_database, syncpipe
from load import data_dir
from syncpipe.db.database import Database
from syncpipe.evaluate import evaluate
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


def settle(dsn: str) -> None:
    """Write out what the previous step left dirty (CHECKPOINT), as hours between runs would.

    Without it, the re-run and the incremental run shared the disk with the checkpoint that
    the first run's 2 GB of writes starts (one incremental took 13.1 s against 7.1-7.7 s).
    A role that may not checkpoint (not superuser nor pg_checkpoint) measures without it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            print("  (no CHECKPOINT: this role may not; the next figure may include one)")


def run_merge(settings: Settings, dsn: str) -> tuple[float, dict[str, Any], int]:
    before = temp_bytes(dsn)
    with Database(settings) as db:
        t0 = time.perf_counter()
        result = MergeService(settings, db).run(sample=0)
        elapsed = time.perf_counter() - t0
    time.sleep(0.6)  # statistics are flushed asynchronously
    return elapsed, result.to_dict(), temp_bytes(dsn) - before


def side_by_side(dsn: str, data: Path, first: float, memory: MemorySampler) -> None:
    """Splink on the same files; both quality figures against truth.csv; one table."""
    import peer_splink

    with psycopg.connect(dsn) as conn:
        q = evaluate(conn, data / "truth.csv")
    print("\nSplink on the same files ...", flush=True)
    s = peer_splink.run(data)
    times = s["times"]
    assert isinstance(times, dict)
    rows = [
        (
            "wall time",
            f"{first:.1f} s (merge; load not included)",
            f"{s['wall']:.1f} s (+ {s['prepare_wall']:.1f} s: CSVs cleaned to Parquet)",
        ),
        (
            "  of which",
            "(phases above)",
            ", ".join(f"{k} {v:.1f}" for k, v in times.items() if k != "total"),
        ),
        (
            "peak memory",
            f"PSS {memory.peak_pss / 1e6:,.0f} MB (RSS sum {memory.peak_rss / 1e6:,.0f} MB)",
            f"PSS {s['peak_pss_mb']:,.0f} MB (RSS high-water {s['peak_rss_mb']:,.0f} MB)",
        ),
        ("records scored", f"{q.records:,}", f"{s['scored_records']:,}"),
        ("clusters (agents)", f"{q.agents:,}", f"{s['clusters']:,}"),
        ("pairwise precision", f"{q.precision:.4f}", f"{s['precision']:.4f}"),
        ("pairwise recall", f"{q.recall:.4f}", f"{s['recall']:.4f}"),
        ("F1", f"{q.f1:.4f}", f"{s['f1']:.4f}"),
        ("review items", f"{q.review_items:,} (recall after review {q.recall_after_review})", ""),
    ]
    print(f"\n{'':<20} {'syncpipe':<48} Splink {s['splink']} (DuckDB)")
    for label, ours, theirs in rows:
        print(f"{label:<20} {ours:<48} {theirs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_333_333)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--increment-share", type=float, default=0.01)
    parser.add_argument("--vs-splink", action="store_true", help="first run, then Splink")
    parser.add_argument("--keep", action="store_true", help="keep the database (bench/floor.py)")
    args = parser.parse_args()

    base = data_dir(args.persons, args.seed)
    increment = data_dir(max(100, round(args.persons * args.increment_share)), args.seed + 1)
    with scratch_database("syncpipe_bench_merge", keep=args.keep) as dsn:
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

        dbname = str(conninfo_to_dict(dsn)["dbname"])
        with MemorySampler(lambda: [*postgres_backends(dbname), os.getpid()]) as memory:
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
        print(
            f"  peak memory: PSS {memory.peak_pss / 1e6:,.0f} MB, RSS {memory.peak_rss / 1e6:,.0f}"
            f" MB (backends + parallel workers + client, {memory.samples} samples)"
        )
        if args.keep:
            saved = Path(__file__).resolve().parent / "out" / f"{dbname}-first-run.json"
            saved.write_text(json.dumps({"seconds": first, **counts}, indent=1))
            print(f"  first run's result: {saved} (bench/floor.py --phases)")
        if args.vs_splink:
            side_by_side(dsn, base, first, memory)
            return 0

        settle(dsn)
        with psycopg.connect(dsn) as conn:
            t0 = time.perf_counter()
            conn.execute("SELECT public.run_unified_member_pipeline('{}')")
            conn.commit()
            pipeline_rerun = time.perf_counter() - t0
        rerun, rerun_counts, _ = run_merge(settings, dsn)
        print(
            f"\nre-run, nothing new: member pipeline {pipeline_rerun:.2f} s; "
            f"whole merge command {rerun:.2f} s (read: "
            f"{rerun_counts['merge'].get('pending_scan', 'all')})"
        )

        with Database(settings) as db:
            added = LoadService(settings, db).load([increment]).totals()["inserted"]
        settle(dsn)
        inc, inc_counts, _ = run_merge(settings, dsn)
        print(
            f"\nincremental (+{added:,} rows loaded): {inc:.1f} s; records matched "
            f"{inc_counts['merge'].get('pending', 0):,}, agents created "
            f"{inc_counts['merge'].get('agents_created', 0):,}, joined "
            f"{inc_counts['merge'].get('agents_joined', 0):,} (read: "
            f"{inc_counts['merge'].get('pending_scan', 'all')})"
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
