"""Does the answer depend on the order records arrive in? Full, incremental and batched runs.

Usage: python bench/order.py [--persons 10000] [--seed 7] [--shape teams|noisy] [--parts 2]
                             [--batch 5000]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server)

On one generated labelled set, each into a scratch database with the real CLI:
  full         load everything, one merge;
  incremental  the CSV files cut by rows into --parts parts (the last part 10%, the rest equal),
               a load and a merge after each part (records arriving over several runs);
  batched x2   load everything, merge with SYNCPIPE_MERGE_BATCH_RECORDS=--batch, twice.
Each run is compared with the full run by the records' own keys (feed uuid, page uuid and
member position): agents, pairs of records put together by one and not the other, and
precision / recall against truth.csv.
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
from syncpipe import synth
from syncpipe.evaluate import evaluate, read_assignment, record_pairs

Assignment = dict[tuple[str, str], int]


def _run(
    label: str, data: Path, loads: list[Path], truth: Path, env: dict[str, str]
) -> tuple[Assignment, str]:
    with scratch_database("syncpipe_bench_order") as dsn:
        logs = {"SYNCPIPE_LOGS_DIR": str(data / "logs")}
        syncpipe(["deploy", "--no-verify"], dsn, **logs)
        seconds = 0.0
        for folder in loads:
            syncpipe(["load", str(folder)], dsn, **logs)
            seconds += syncpipe(["merge"], dsn, **logs, **env)
        with psycopg.connect(dsn) as conn:
            assignment = read_assignment(conn)
            q = evaluate(conn, truth)
    line = (
        f"{label:<14} {q.agents:>8,} {q.precision:>9.4f} {q.recall:>7.4f} "
        f"{q.review_items:>7,} {q.recall_after_review:>8.4f} {seconds:>7.1f}"
    )
    return assignment, line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shape", choices=("teams", "noisy"), default="teams")
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="syncpipe-order-") as tmp:
        data = Path(tmp) / "data"
        generate_labelled(args.shape, data, args.persons, args.seed)
        truth = data / "truth.csv"
        folders = synth.split_arrivals(data, args.parts, Path(tmp) / "parts")
        batch = {"SYNCPIPE_MERGE_BATCH_RECORDS": str(args.batch)}
        runs = [
            ("full", folders, {}),  # (all parts loaded, then one merge: see below)
            ("incremental", folders, {}),
            ("batched", folders, batch),
            ("batched again", folders, batch),
        ]
        print(f"shape {args.shape}, {args.persons:,} persons, seed {args.seed}")
        print(
            f"{'run':<14} {'agents':>8} {'precision':>9} {'recall':>7} {'review':>7} "
            f"{'after rv':>8} {'merge s':>7} {'pairs only here':>15} {'only in full':>12}"
        )
        full: Assignment = {}
        for label, parts, env in runs:
            if label == "incremental":
                assignment, line = _run(label, data, parts, truth, env)
            else:  # everything at once: one folder holding every part's files
                every = Path(tmp) / "all"
                if not every.exists():
                    every.mkdir()
                    for part in parts:
                        for file in part.glob("*.csv"):
                            os.link(file, every / file.name)
                assignment, line = _run(label, data, [every], truth, env)
            if label == "full":
                full = assignment
                print(line)
                continue
            mine, theirs = record_pairs(assignment), record_pairs(full)
            print(f"{line} {len(mine - theirs):>15,} {len(theirs - mine):>12,}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
