"""Benchmark load: syncpipe load vs psql \\copy of the same files, paired runs on one server.

Usage:
  python bench/load.py [--persons N] [--pairs K] [--scale 100000,1000000,5000000] [--skip-synth]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server; data cached in bench/out/)

1. The synthetic files (``python -m syncpipe.synth``, about 1,000,000 new_agents rows and
   100,000 company pages): for each, K rounds of `psql \\copy` into a plain table (same
   columns, types and primary key), `psql \\copy` into a same-shaped table (``LIKE`` the
   target ``INCLUDING ALL``: its defaults, constraints and indexes, no triggers) and
   `syncpipe load` (validation, screens, rejects, batches committed with the ledger,
   parallel streams) into the real table, in a rotating order. Prints median wall times,
   rows/s, the throughput ratios (median over rounds of psql seconds / syncpipe seconds, so
   > 1 means syncpipe is faster), the loader's peak RSS, a reload of the unchanged file
   (skipped by its checksum) and the same file again with ``--force`` (every row compared
   with its table's).
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
CREATE SCHEMA bench_like;
CREATE TABLE bench_like.new_agents (LIKE public.new_agents INCLUDING ALL);
CREATE TABLE bench_like.company_info_raw (LIKE bronze.company_info_raw INCLUDING ALL);
"""
#: file -> (syncpipe's table, the minimal plain table, the same-shaped table: the target's
#: columns, defaults, constraints and indexes, no triggers)
FILES = {
    "new_agents.csv": ("public.new_agents", "bench_plain.new_agents", "bench_like.new_agents"),
    "raw_company_info.csv": (
        "bronze.company_info_raw",
        "bench_plain.company_info_raw",
        "bench_like.company_info_raw",
    ),
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
    """Empty a table and forget its loads (so syncpipe loads the file again)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(ident(table)))
        conn.execute("DELETE FROM syncpipe.load_files WHERE table_name = %s", (table,))
        conn.execute("CHECKPOINT")


def psql_copy(dsn: str, plain: str, path: Path) -> float:
    reset(dsn, plain)
    cols = "supabase_uuid, full_name, email_clean, phone_digits, team_id, social_links"
    if "company" in plain:
        cols = "research_uuid, team_id, website, team_members"
    t0 = time.perf_counter()
    copy = f"\\copy {plain} ({cols}) from '{path}' with (format csv, header true)"
    subprocess.run(["psql", "-X", "-q", dsn, "-c", copy], check=True)
    return time.perf_counter() - t0


@dataclass
class Pair:
    """Medians of paired runs (seconds; ratios are psql seconds / syncpipe seconds)."""

    rows: int
    plain: float
    like: float
    ours: float
    ratio_plain: float
    ratio_like: float
    runs: list[tuple[float, float, float]]
    rss_mb: float


def pairs(dsn: str, env: dict[str, str], path: Path, tables: tuple[str, str, str], n: int) -> Pair:
    """n rounds of psql into the plain table, psql into the same-shaped table and syncpipe
    into the real one, in a rotating order."""
    table, plain, like = tables
    syncpipe = [sys.executable, "-m", "syncpipe", "load", str(path)]
    runs: list[tuple[float, float, float]] = []
    rss: list[int] = []
    for i in range(n):
        order = ["plain", "like", "ours"]
        order = order[i % 3 :] + order[: i % 3]
        times: dict[str, float] = {}
        for who in order:
            if who == "ours":
                reset(dsn, table)
                elapsed, peak, _ = run_measured(syncpipe, env)
                times["ours"] = elapsed
                rss.append(peak)
            else:
                times[who] = psql_copy(dsn, plain if who == "plain" else like, path)
        assert count(dsn, table) == count(dsn, plain) == count(dsn, like), "row counts differ"
        runs.append((times["plain"], times["like"], times["ours"]))
    return Pair(
        rows=count(dsn, table),
        plain=statistics.median(r[0] for r in runs),
        like=statistics.median(r[1] for r in runs),
        ours=statistics.median(r[2] for r in runs),
        ratio_plain=statistics.median(r[0] / r[2] for r in runs),
        ratio_like=statistics.median(r[1] / r[2] for r in runs),
        runs=runs,
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
            for name, tables in FILES.items():
                path = data / name
                r = pairs(dsn, env, path, tables, args.pairs)
                size_mb = path.stat().st_size / 1e6
                print(f"\n{name}: {r.rows:,} rows, {size_mb:,.0f} MB, {args.pairs} rounds")
                for label, secs in (
                    ("psql \\copy, plain table (columns, types, key)", r.plain),
                    ("psql \\copy, same-shaped table (LIKE target)", r.like),
                    ("syncpipe load (validated, ledger, rejects)", r.ours),
                ):
                    print(f"  {label:<46} median {secs:6.2f} s {r.rows / secs:>10,.0f} rows/s")
                print(
                    f"  ratio syncpipe/psql, median of rounds: {r.ratio_like:.2f} vs the "
                    f"same-shaped table, {r.ratio_plain:.2f} vs the plain one   target >= 1.0"
                )
                rounds = [tuple(round(x, 2) for x in t) for t in r.runs]
                print(f"  rounds (plain, same-shaped, syncpipe): {rounds}")
                print(f"  loader peak RSS: {r.rss_mb:.0f} MB   target <= 250 MB")
                reload_t, reload_rss, _ = run_measured(
                    [sys.executable, "-m", "syncpipe", "load", str(path)], env
                )
                print(
                    f"  reload of the unchanged file: {reload_t:.2f} s (peak RSS "
                    f"{reload_rss / 1024:.0f} MB)"
                )
                forced_t, forced_rss, _ = run_measured(
                    [sys.executable, "-m", "syncpipe", "load", str(path), "--force"], env
                )
                print(
                    f"  the same file again with --force (every row compared, none changed): "
                    f"{forced_t:.2f} s, {forced_t / r.ours:.1f}x its load "
                    f"(peak RSS {forced_rss / 1024:.0f} MB)"
                )
        sizes = [int(s) for s in args.scale.split(",") if s.strip()]
        if sizes:
            print("\nscale (new_agents, generated rows; one round per size):")
            print(
                f"  {'rows':>10} {'psql plain':>11} {'psql same':>10} {'syncpipe':>10} "
                f"{'ratio':>11} {'RSS':>7} | {'20 bad/M: rows/s':>17} {'rejected':>9} {'RSS':>7}"
            )
        for size in sizes:
            path = scale_file(size)
            r = pairs(dsn, env, path, FILES["new_agents.csv"], 1)
            bad = scale_file(size, bad_per_million=20)
            reset(dsn, "public.new_agents")
            elapsed, peak, code = run_measured(
                [sys.executable, "-m", "syncpipe", "load", str(bad)], env
            )
            loaded = count(dsn, "public.new_agents")
            print(
                f"  {r.rows:>10,} {r.rows / r.plain:>11,.0f} {r.rows / r.like:>10,.0f} "
                f"{r.rows / r.ours:>10,.0f} {r.ratio_like:>5.2f}/{r.ratio_plain:<5.2f} "
                f"{r.rss_mb:>4.0f} MB | {size / elapsed:>17,.0f} {size - loaded:>9,} "
                f"{peak / 1024:>4.0f} MB  (exit {code})",
                flush=True,
            )
        print("  (rows/s; ratio = syncpipe vs psql into the same-shaped / the plain table)")


if __name__ == "__main__":
    main()
