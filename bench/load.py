"""Benchmark load: syncpipe load vs psql \\copy of the same files, paired runs on one server.

Usage: python bench/load.py [--persons N] [--pairs K]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server; data cached in bench/out/)

Generates (once) about 1,000,000 new_agents rows and 100,000 company pages (~1,000,000
members) with the synthetic generator, then for each file alternates `psql \\copy` into an
equivalent plain table (same columns, types and primary key) with `syncpipe load` (validation
included) into the real table, K times. Prints the median wall times, rows/s, the throughput
ratio (median of the pair ratios), the loader's peak RSS, and the time of a reload of the
unchanged file. Targets (issue 3): ratio >= 0.8, peak RSS <= 250 MB, reload <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
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


def peak_rss_kb(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run cmd; wall seconds and peak RSS in KB (from wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=1_333_333)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    data = data_dir(args.persons, args.seed)
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
        syncpipe = [sys.executable, "-m", "syncpipe", "load"]
        print(f"data: {data}")
        for name, (table, plain) in FILES.items():
            path = data / name
            size_mb = path.stat().st_size / 1e6
            psql_t: list[float] = []
            ours_t: list[float] = []
            ratios: list[float] = []
            rss: list[int] = []
            rows = 0
            for i in range(args.pairs):
                order = ("psql", "ours") if i % 2 == 0 else ("ours", "psql")
                times: dict[str, float] = {}
                for who in order:
                    if who == "psql":
                        reset(dsn, plain)
                        t0 = time.perf_counter()
                        copy = f"\\copy {plain} from '{path}' with (format csv, header true)"
                        subprocess.run(["psql", "-X", "-q", dsn, "-c", copy], check=True)
                        times["psql"] = time.perf_counter() - t0
                    else:
                        reset(dsn, table)
                        elapsed, peak = peak_rss_kb([*syncpipe, str(path)], env)
                        times["ours"] = elapsed
                        rss.append(peak)
                rows = count(dsn, table)
                assert rows == count(dsn, plain), "row counts differ"
                psql_t.append(times["psql"])
                ours_t.append(times["ours"])
                ratios.append(times["psql"] / times["ours"])
            reload_t, reload_rss = peak_rss_kb([*syncpipe, str(path)], env)
            p, o = statistics.median(psql_t), statistics.median(ours_t)
            print(f"\n{name}: {rows:,} rows, {size_mb:,.0f} MB, {args.pairs} paired runs")
            print(f"  psql \\copy (plain table)   median {p:6.2f} s  {rows / p:>10,.0f} rows/s")
            print(f"  syncpipe load (validated) median {o:6.2f} s  {rows / o:>10,.0f} rows/s")
            print(
                f"  throughput ratio syncpipe/psql (median of pairs): "
                f"{statistics.median(ratios):.2f}   target >= 0.80"
            )
            print(
                f"  pairs: psql {[round(x, 2) for x in psql_t]} syncpipe "
                f"{[round(x, 2) for x in ours_t]}"
            )
            print(f"  loader peak RSS: {max(rss) / 1024:.0f} MB   target <= 250 MB")
            print(
                f"  reload of the unchanged file: {reload_t:.2f} s (peak RSS "
                f"{reload_rss / 1024:.0f} MB)   target <= 1 s"
            )


if __name__ == "__main__":
    main()
