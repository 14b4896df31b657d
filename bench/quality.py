"""Merge quality on the generator's labelled data: pairwise precision, recall, F1, review load.

Usage: python bench/quality.py [--persons 10000] [--seed 7 --seed 8 ...] [--shape teams|noisy]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server)

Two labelled generators of different shapes and independent noise models:
  teams  syncpipe.synth: teams of a dozen, personal mobiles, office lines, light name noise.
  noisy  syncpipe.synth_noisy: no phones, noisy or missing teams, heavy name corruption
         (typos, nicknames, initials, swapped order, missing given names), moved agents.

For each seed: generate --persons real persons (nicknames, typos, "Last, First", missing
surnames, shared office lines and info@ mailboxes, movers, namesakes, juniors, garbage
members), deploy into a scratch database, `syncpipe load` and `syncpipe merge` (the real CLI),
then score the master table against truth.csv. "After review" accepts the open review pairs
that are right, as a careful reviewer would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from _common import generate_labelled, scratch_database, syncpipe
from syncpipe.evaluate import evaluate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--seed", type=int, action="append", help="repeatable (default: 7 and 8)")
    parser.add_argument("--shape", choices=("teams", "noisy"), default="teams")
    args = parser.parse_args()
    seeds = args.seed or [7, 8]

    header = (
        f"{'seed':>6} {'records':>8} {'precision':>9} {'recall':>7} {'F1':>6} "
        f"{'review/1k':>9} {'right':>6} {'1st half':>8} {'recall after review':>20} {'merge s':>8}"
    )
    print(f"shape: {args.shape}, {args.persons:,} persons")
    print(header)
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="syncpipe-quality-") as tmp:
            data = Path(tmp)
            generate_labelled(args.shape, data, args.persons, seed)
            with scratch_database("syncpipe_bench_quality") as dsn:
                syncpipe(["deploy", "--no-verify"], dsn, SYNCPIPE_LOGS_DIR=str(data / "logs"))
                syncpipe(["load", str(data)], dsn, SYNCPIPE_LOGS_DIR=str(data / "logs"))
                seconds = syncpipe(["merge"], dsn, SYNCPIPE_LOGS_DIR=str(data / "logs"))
                with psycopg.connect(dsn) as conn:
                    q = evaluate(conn, data / "truth.csv")
        right = q.review_items_right / q.review_items if q.review_items else 0.0
        print(
            f"{seed:>6} {q.records:>8,} {q.precision:>9.4f} {q.recall:>7.4f} {q.f1:>6.4f} "
            f"{q.review_per_1000_records:>9.2f} {right:>6.0%} {q.review_first_half_right:>8.0%} "
            f"{q.recall_after_review:>20.4f} {seconds:>8.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
