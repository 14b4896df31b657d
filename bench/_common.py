"""Shared helpers for the benchmarks: scratch databases and timing."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ADMIN_DSN = os.environ.get(
    "SYNCPIPE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def generate_labelled(shape: str, out: Path, persons: int, seed: int) -> None:
    """A labelled set (with truth.csv) of one of the two generators: "teams" (syncpipe.synth)
    or "noisy" (syncpipe.synth_noisy)."""
    from syncpipe import synth, synth_noisy

    if shape == "noisy":
        synth_noisy.generate(out, synth_noisy.Config(persons=persons, seed=seed))
    else:
        synth.generate(out, synth.Config(persons=persons, seed=seed))


def dsn_for(dbname: str) -> str:
    """The admin DSN pointed at another database."""
    params = conninfo_to_dict(ADMIN_DSN)
    params["dbname"] = dbname
    return make_conninfo(**params)


@contextmanager
def scratch_database(prefix: str = "syncpipe_bench", *, keep: bool = False) -> Iterator[str]:
    """Create a throwaway database; yield its DSN; drop it (unless ``keep``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield dsn_for(name)
    finally:
        if keep:
            print(f"kept database {name}: {dsn_for(name)}", flush=True)
        else:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def syncpipe(args: list[str], dsn: str | None, **env: str) -> float:
    """Run the real CLI in a subprocess; return its wall time; raise if it failed."""
    environment = {**os.environ, **env}
    if dsn:
        environment["SYNCPIPE_DATABASE_URL"] = dsn
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "syncpipe", *args], env=environment, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"syncpipe {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return elapsed


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """Median and all samples of ``runs`` calls."""
    samples = [fn() for _ in range(runs)]
    return statistics.median(samples), samples


def pairwise_quality(
    assignment: dict[tuple[str, str], int], truth_path: Path
) -> dict[str, float | int]:
    """Pairwise precision/recall of any clustering, scored as ``syncpipe.evaluate`` scores the
    master table: ``assignment`` maps (source, source_key) as truth.csv names records to a
    cluster; records the truth does not know (garbage members) are left out on both sides."""
    from syncpipe.evaluate import _score, read_truth

    truth = read_truth(truth_path)
    known = {key: cluster for key, cluster in assignment.items() if key in truth}
    true_pairs, predicted, correct = _score(known, truth)
    precision = correct / predicted if predicted else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "scored_records": len(known),
        "true_pairs": true_pairs,
        "predicted_pairs": predicted,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process, (0, 0) if it is gone; PSS needs root or the owner."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def postgres_backends(dbname: str) -> list[int]:
    """PIDs of the server processes working for ``dbname``: its backends (process title
    ``postgres: [cluster:] USER DBNAME ...``) and the parallel workers they start (``parallel
    worker for PID n``), found in /proc (the server must run on this machine)."""
    backends: list[int] = []
    workers: list[tuple[int, int]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                title = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not title.startswith("postgres: "):
            continue
        words = title.split()  # "postgres: [cluster_name:] USER DBNAME HOST(PORT) STATE"
        if "parallel worker for PID" in title:
            workers.append((int(entry), int(words[-1])))
        elif dbname in words[1:4]:
            backends.append(int(entry))
    return backends + [pid for pid, leader in workers if leader in backends]


class MemorySampler:
    """Samples the summed RSS and PSS of the processes ``pids()`` names every ``interval``
    seconds in a thread; keeps the peaks of the sums."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.2) -> None:
        import threading

        self._pids = pids
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.peak_rss = 0
        self.peak_pss = 0
        self.samples = 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = pss = 0
            for pid in self._pids():
                r, p = _memory(pid)
                rss, pss = rss + r, pss + p
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
