"""Benchmark load: syncpipe load vs psql \\copy of the same files, paired runs on one server.

Usage:
  python bench/load.py [--persons N] [--pairs K] [--scale 100000,1000000,5000000] [--skip-synth]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server; data cached in bench/out/)

1. The synthetic files (``python -m syncpipe.synth``, about 1,000,000 new_agents rows and
   100,000 company pages): for each, K pairs of `psql \\copy` into an equivalent plain table
   (same columns, types and primary key) and `syncpipe load` (validation, screens, rejects,
   batches committed with the ledger, parallel streams) into the real table, alternating
   which goes first. Prints median wall times, rows/s, the throughput ratio (median of the
   pair ratios: psql seconds / syncpipe seconds, so > 1 means syncpipe is faster), the
   loader's peak RSS and the time of a reload of the unchanged file.
2. ``--scale``: new_agents files of each size (simple generated rows), one pair each, to put
   the growth of the cost on record (rows/s and peak RSS per size), plus the same file with
   20 bad rows per million spread over it (syncpipe only: psql cannot load it), whose cost is
   compared with the clean pair.

Both sides of a pair run in the same minute on the same server, so the machine's load (other
work on it) hits both: compare ratios, not seconds from different runs. Targets (issue 14):
ratio >= 1.0, peak RSS <= 250 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, os.path.dirname(__file__))
from _common import scratch_database

ROOT = Path(__file__).resolve().parent
PLAIN_DDL = """
CREATE SCHEMA bench_plain;
CREATE TABLE bench_plain.new_agents (supabase_uuid uuid PRIMARY KEY, full_name text,
    email_clean jsonb, phone_digits jsonb, team_id text, social_links jsonb);
CREATE TABLE bench_plain.company_info_raw (research_uuid uuid PRIMARY KEY, team_id text,
    website text, team_members jsonb);
"""
FILES = {
    "new_agents.csv": ("public.new_agents", "bench_plain.new_agents"),
    "raw_company_info.csv": ("bronze.company_info_raw", "bench_plain.company_info_raw"),
}
HEADER = "supabase_uuid,full_name,email_clean,phone_digits,team_id,social_links\n"


def data_dir(persons: int, seed: int) -> Path:
    out = ROOT / "out" / f"synth-{persons}-{seed}"
    if not (out / "raw_company_info.csv").exists():
        print(f"generating {persons:,} persons into {out} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "syncpipe.synth",
                "--persons",
                str(persons),
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
            check=True,
        )
    return out


def _row(i: int) -> str:
    emails = json.dumps([f"agent{i}@example.com", f"a.{i}@mail.example.org"]).replace('"', '""')
    phones = json.dumps([f"+1555{i % 10_000_000:07d}"]).replace('"', '""')
    links = json.dumps({"site": f"https://example.com/agents/{i}"}).replace('"', '""')
    return (
        f'{uuid.UUID(int=i + 1, version=4)},Agent Number {i},"{emails}","{phones}",'
        f'team-{i % 5000},"{links}"\n'
    )


BAD_ROWS = (
    'not-a-uuid,Bad Uuid,"[]","[]",t,"{{}}"\n',
    '11111111-1111-4111-8111-{n:012d},Bad Json,"[""a@b.com"",]","[]",t,"{{}}"\n',
    '22222222-2222-4222-8222-{n:012d},Numbers,"[]","[5551234567]",t,"{{}}"\n',
    '33333333-3333-4333-8333-{n:012d},Long Team,"[]","[]",' + "t" * 600 + ',"{{}}"\n',
    '44444444-4444-4444-8444-{n:012d},Deep,"[]","[]",t,"{{""a"": '
    + "[" * 200
    + "]" * 200
    + '}}"\n',
)


def scale_file(rows: int, *, bad_per_million: int = 0) -> Path:
    """A new_agents file of ``rows`` rows (cached); with bad rows spread evenly if asked."""
    suffix = f"-bad{bad_per_million}" if bad_per_million else ""
    path = ROOT / "out" / f"scale-{rows}{suffix}" / "new_agents.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    bad_every = 1_000_000 // bad_per_million if bad_per_million else 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(HEADER)
        for i in range(rows):
            if bad_every and i % bad_every == bad_every // 2:
                n = i // bad_every
                fh.write(BAD_ROWS[n % len(BAD_ROWS)].format(n=n))
            else:
                fh.write(_row(i))
    tmp.rename(path)
    return path


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Run cmd; wall seconds, peak RSS in KB (from wait4) and the exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss, code


def ident(table: str) -> sql.Composed:
    return sql.SQL(".").join(sql.Identifier(p) for p in table.split("."))


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(table))).fetchone()
        return int(row[0]) if row else 0


def reset(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(ident(table)))
        conn.execute("DELETE FROM syncpipe.load_files")
        conn.execute("CHECKPOINT")


def psql_copy(dsn: str, plain: str, path: Path) -> float:
    reset(dsn, plain)
    t0 = time.perf_counter()
    copy = f"\\copy {plain} from '{path}' with (format csv, header true)"
    subprocess.run(["psql", "-X", "-q", dsn, "-c", copy], check=True)
    return time.perf_counter() - t0


@dataclass
class Pair:
    """Medians of paired runs."""

    rows: int
    psql: float
    ours: float
    ratio: float
    psql_runs: list[float]
    ours_runs: list[float]
    rss_mb: float


def pairs(dsn: str, env: dict[str, str], path: Path, table: str, plain: str, n: int) -> Pair:
    """n paired runs; medians, ratio, peak RSS."""
    syncpipe = [sys.executable, "-m", "syncpipe", "load", str(path)]
    psql_t: list[float] = []
    ours_t: list[float] = []
    ratios: list[float] = []
    rss: list[int] = []
    for i in range(n):
        order = ("psql", "ours") if i % 2 == 0 else ("ours", "psql")
        times: dict[str, float] = {}
        for who in order:
            if who == "psql":
                times["psql"] = psql_copy(dsn, plain, path)
            else:
                reset(dsn, table)
                elapsed, peak, _ = run_measured(syncpipe, env)
                times["ours"] = elapsed
                rss.append(peak)
        assert count(dsn, table) == count(dsn, plain), "row counts differ"
        psql_t.append(times["psql"])
        ours_t.append(times["ours"])
        ratios.append(times["psql"] / times["ours"])
    return Pair(
        rows=count(dsn, table),
        psql=statistics.median(psql_t),
        ours=statistics.median(ours_t),
        ratio=statistics.median(ratios),
        psql_runs=psql_t,
        ours_runs=ours_t,
        rss_mb=max(rss) / 1024,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=1_333_333)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--scale", default="", help="comma-separated new_agents row counts")
    parser.add_argument("--skip-synth", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncpipe-bench-load-"))
    os.chdir(work)
    with scratch_database() as dsn:
        env = {**os.environ, "SYNCPIPE_DATABASE_URL": dsn, "SYNCPIPE_LOG_FORMAT": "json"}
        subprocess.run(
            [sys.executable, "-m", "syncpipe", "deploy", "--no-verify"],
            env=env,
            check=True,
            capture_output=True,
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(PLAIN_DDL)
        print(
            "settings: SYNCPIPE_LOAD_BATCH_ROWS="
            + os.environ.get("SYNCPIPE_LOAD_BATCH_ROWS", "default")
            + " SYNCPIPE_LOAD_STREAMS="
            + os.environ.get("SYNCPIPE_LOAD_STREAMS", "default"),
            flush=True,
        )
        if not args.skip_synth:
            data = data_dir(args.persons, args.seed)
            print(f"data: {data}")
            for name, (table, plain) in FILES.items():
                path = data / name
                r = pairs(dsn, env, path, table, plain, args.pairs)
                rows = r.rows
                p, o = r.psql, r.ours
                size_mb = path.stat().st_size / 1e6
                print(f"\n{name}: {rows:,} rows, {size_mb:,.0f} MB, {args.pairs} paired runs")
                print(f"  psql \\copy (plain table)   median {p:6.2f} s  {rows / p:>10,.0f} rows/s")
                print(f"  syncpipe load (validated) median {o:6.2f} s  {rows / o:>10,.0f} rows/s")
                print(
                    f"  throughput ratio syncpipe/psql (median of pairs): {r.ratio:.2f}"
                    "   target >= 1.0"
                )
                print(
                    f"  pairs: psql {[round(x, 2) for x in r.psql_runs]} syncpipe "
                    f"{[round(x, 2) for x in r.ours_runs]}"
                )
                print(f"  loader peak RSS: {r.rss_mb:.0f} MB   target <= 250 MB")
                reload_t, reload_rss, _ = run_measured(
                    [sys.executable, "-m", "syncpipe", "load", str(path)], env
                )
                print(
                    f"  reload of the unchanged file: {reload_t:.2f} s (peak RSS "
                    f"{reload_rss / 1024:.0f} MB)"
                )
        sizes = [int(s) for s in args.scale.split(",") if s.strip()]
        if sizes:
            print("\nscale (new_agents, generated rows; one pair per size):")
            print(
                f"  {'rows':>10} {'psql rows/s':>12} {'syncpipe rows/s':>16} {'ratio':>6} "
                f"{'peak RSS':>9} | {'with 20 bad/M: rows/s':>22} {'rejected':>9} {'RSS':>7}"
            )
        for size in sizes:
            path = scale_file(size)
            r = pairs(dsn, env, path, "public.new_agents", "bench_plain.new_agents", 1)
            rows = r.rows
            bad = scale_file(size, bad_per_million=20)
            reset(dsn, "public.new_agents")
            elapsed, peak, code = run_measured(
                [sys.executable, "-m", "syncpipe", "load", str(bad)], env
            )
            loaded = count(dsn, "public.new_agents")
            print(
                f"  {rows:>10,} {rows / r.psql:>12,.0f} "
                f"{rows / r.ours:>16,.0f} {r.ratio:>6.2f} "
                f"{r.rss_mb:>6.0f} MB | {size / elapsed:>22,.0f} {size - loaded:>9,} "
                f"{peak / 1024:>4.0f} MB  (exit {code})",
                flush=True,
            )


if __name__ == "__main__":
    main()
