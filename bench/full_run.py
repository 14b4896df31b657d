"""Benchmark `syncpipe deploy --full` on the sample data, on the embedded PostgreSQL.

Usage: python bench/full_run.py [--runs 3]

Each run starts from nothing (a new embedded data folder, no DSN) in a scratch folder, so the
time includes creating and starting the embedded server, deploy, verify, load, merge and both
reports; then the same command again on the now-populated folder (nothing new to do).
Target (issue 5): <= 10 s including the server's start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import syncpipe

SAMPLE = Path(__file__).resolve().parent.parent / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    for name in [k for k in os.environ if k.endswith("DATABASE_URL")]:
        del os.environ[name]  # no DSN: the embedded server
    first: list[float] = []
    again: list[float] = []
    cwd = Path.cwd()
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="syncpipe-full-") as tmp:
            os.chdir(tmp)
            try:
                first.append(syncpipe(["deploy", "--full"], None, SYNCPIPE_DATA_DIR=str(SAMPLE)))
                again.append(syncpipe(["deploy", "--full"], None, SYNCPIPE_DATA_DIR=str(SAMPLE)))
            finally:
                os.chdir(cwd)
    print(
        f"deploy --full from nothing (embedded start included): median "
        f"{statistics.median(first):.2f} s of {', '.join(f'{t:.2f}' for t in first)}"
    )
    print(
        f"deploy --full again, nothing new:                     median "
        f"{statistics.median(again):.2f} s of {', '.join(f'{t:.2f}' for t in again)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
