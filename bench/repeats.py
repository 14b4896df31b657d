"""Benchmark: a file whose keys repeat across its batches, against the same file without.

Usage:
  python bench/repeats.py [--rows 200000] [--share 0.1] [--batch-rows 20000,2000] [--streams 4]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server)

Two files of ``--rows`` rows: one whose keys are all different, one where ``--share`` of the
rows, spread over the file, repeat the key of an earlier row, spelled another way ("07" for 7,
a timestamp with its offset written out). Each is loaded into a fresh table keyed by a
``numeric`` (whose repeats syncpipe finds by comparing the file's text in Python) and by a
``timestamptz`` (whose repeats the server compares), with ``--streams`` streams, for each
batch size. Prints wall times and the ratio repeats / clean: the cost of a file's repeats,
each rejected naming the line of its first row.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, os.path.dirname(__file__))
from _common import scratch_database

KINDS = ("numeric", "timestamptz")
_EPOCH = datetime(2024, 1, 1)


def _key(kind: str, i: int, spelled: bool) -> str:
    """Row i's key, or the same key spelled another way ("07" for 7; a timestamp with a T
    and its offset)."""
    if kind == "numeric":
        return f"0{i}" if spelled else str(i)
    at = _EPOCH + timedelta(seconds=i)
    return at.isoformat() + "+00:00" if spelled else at.isoformat(sep=" ")


def write_file(path: Path, kind: str, rows: int, share: float, seed: int) -> int:
    """The file; the number of its repeated keys."""
    rng = random.Random(seed)
    repeats = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write("k,v\n")
        for i in range(rows):
            if share and i > 0 and rng.random() < share:
                fh.write(f"{_key(kind, rng.randrange(i), True)},repeat {i}\n")
                repeats += 1
            else:
                fh.write(f"{_key(kind, i, False)},value {i}\n")
    return repeats


def load(dsn: str, path: Path, kind: str, batch_rows: int, streams: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.bench_repeats")
        conn.execute("DELETE FROM syncpipe.load_files")  # (each load a first one)
        conn.execute(
            sql.SQL("CREATE TABLE public.bench_repeats (k {} PRIMARY KEY, v text)").format(
                sql.SQL(kind)
            )
        )
    env = {
        **os.environ,
        "SYNCPIPE_DATABASE_URL": dsn,
        "SYNCPIPE_LOAD_BATCH_ROWS": str(batch_rows),
        "SYNCPIPE_LOAD_STREAMS": str(streams),
        "TZ": "UTC",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "syncpipe", "load", str(path), "-t", "public.bench_repeats"],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"syncpipe load exited {proc.returncode}:\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--batch-rows", default="20000,2000")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_rows.split(",") if s]
    print(f"{args.rows:,} rows, {args.share:.0%} repeated, {args.streams} streams")
    with tempfile.TemporaryDirectory() as tmp, scratch_database("syncpipe_bench_rep") as dsn:
        env = {**os.environ, "SYNCPIPE_DATABASE_URL": dsn}
        subprocess.run(
            [sys.executable, "-m", "syncpipe", "deploy"], env=env, check=True, capture_output=True
        )
        for kind in KINDS:
            clean, rep = Path(tmp) / f"clean-{kind}.csv", Path(tmp) / f"repeats-{kind}.csv"
            write_file(clean, kind, args.rows, 0.0, args.seed)
            repeats = write_file(rep, kind, args.rows, args.share, args.seed)
            for size in sizes:
                a = load(dsn, clean, kind, size, args.streams)
                b = load(dsn, rep, kind, size, args.streams)
                print(
                    f"  {kind:<12} batches of {size:>6,}: clean {a:6.2f} s, "
                    f"{repeats:,} repeats {b:6.2f} s, ratio {b / a:5.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
