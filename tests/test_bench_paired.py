"""bench/paired.py end to end at a small size: this tree against itself (a "before" checkout
whose interpreter is this one), so the two sides must give the same digests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import ROOT


def test_paired_bench_compares_two_codes_on_copies_of_one_database(
    pg_server: str, tmp_path: Path
) -> None:
    before = tmp_path / "before"
    (before / ".venv" / "bin").mkdir(parents=True)
    # (a script, not a symlink: a venv's interpreter finds its packages by its own path)
    python = before / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCPIPE_")}
    env["SYNCPIPE_BENCH_DATABASE_URL"] = pg_server
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "paired.py"),
            "--before",
            str(before),
            "--persons",
            "300",
            "--pairs",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "pair 1 before" in out and "pair 1 now" in out
    assert "now / before" in out
    # the same code on both sides: the same clusters and review queue, first and incremental
    assert "first run: the same result as before: True" in out
    assert "incremental run: the same result as before: True" in out
    # nothing left behind on the server
    with psycopg.connect(pg_server) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'paired\\_%'"
        ).fetchone()
    assert left is not None and left[0] == 0


def test_paired_bench_needs_the_other_checkouts_interpreter(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "paired.py"), "--before", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert ".venv/bin/python does not exist" in done.stderr
