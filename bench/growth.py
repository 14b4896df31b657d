"""How the first merge grows with the data: time and memory per record at several sizes.

Usage: python bench/growth.py [--persons 100000,1000000,3000000] [--seed 42] [--json FILE]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server; data cached in bench/out/)

For each size: the generator's files (`syncpipe.synth`) deployed and loaded into a scratch
database (not timed), then the first run, end to end, with the real service behind
`syncpipe merge` (member pipeline + merge batch, one transaction), as `bench/merge.py` times
it. Printed per size: records matched, wall time, time per record, peak memory (summed PSS of
the database's backends, their parallel workers and this client, sampled every 0.2 s) and
memory per record. Then the growth exponents: k in time ~ records^k, between each pair of
sizes and fitted over all of them (1.0 is linear; n log n between the two sizes is printed
beside it), for the whole run and for every phase; an exponent above n log n is marked.
`--report FILE` prints the figures of an earlier `--json FILE` again, without running.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, os.path.dirname(__file__))
from _common import MemorySampler, postgres_backends, scratch_database
from load import data_dir
from merge import run_merge
from syncpipe.db.database import Database
from syncpipe.services.deploy import DeployService
from syncpipe.services.load.loader import LoadService
from syncpipe.settings import Settings

#: Phases shorter than this at the smallest size are timer noise, not growth.
MIN_PHASE_SECONDS = 0.5
#: How far above n log n an exponent must be to be marked (the timer's noise between runs).
MARGIN = 0.05


def measure(persons: int, seed: int) -> dict[str, Any]:
    """One size: load (untimed), then the first run, timed and sampled."""
    data = data_dir(persons, seed)
    with scratch_database("syncpipe_bench_growth") as dsn:
        logs = Path(tempfile.gettempdir()) / "syncpipe-bench-logs"
        settings = Settings(_env_file=None, database_url=dsn, logs_dir=logs)  # type: ignore[call-arg]
        with Database(settings) as db:
            DeployService(settings, db).run()
            LoadService(settings, db).load([data])
        dbname = str(conninfo_to_dict(dsn)["dbname"])
        with MemorySampler(lambda: [*postgres_backends(dbname), os.getpid()]) as memory:
            seconds, counts, temp = run_merge(settings, dsn)
    records = int(counts["merge"].get("pending", 0))
    return {
        "persons": persons,
        "records": records,
        "seconds": seconds,
        "peak_pss": memory.peak_pss,
        "temp_bytes": temp,
        "agents": int(counts["merge"].get("agents_created", 0)),
        "review_items": int(counts["merge"].get("review_items_added", 0)),
        "phases": counts["phases"],
    }


def exponent(n1: float, t1: float, n2: float, t2: float) -> float:
    """k in t ~ n^k through two points."""
    return math.log(t2 / t1) / math.log(n2 / n1)


def n_log_n(n1: float, n2: float) -> float:
    """The exponent that n log n shows between n1 and n2 (a little above 1)."""
    return exponent(n1, n1 * math.log(n1), n2, n2 * math.log(n2))


def fitted(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log t against log n."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def report(runs: list[dict[str, Any]]) -> None:
    print(
        f"\n{'persons':>10} {'records':>10} {'first run':>10} {'us/record':>10}"
        f" {'peak PSS':>10} {'bytes/record':>13} {'temp files':>11}"
    )
    for r in runs:
        print(
            f"{r['persons']:>10,} {r['records']:>10,} {r['seconds']:>9.1f}s"
            f" {r['seconds'] / r['records'] * 1e6:>10.1f} {r['peak_pss'] / 1e6:>8,.0f}MB"
            f" {r['peak_pss'] / r['records']:>13,.0f} {r['temp_bytes'] / 1e6:>9,.0f}MB"
        )
    if len(runs) < 2:
        return
    pairs = list(itertools.pairwise(runs))
    steps = [f"{a['persons'] // 1000:,}k->{b['persons'] // 1000:,}k" for a, b in pairs]
    limits = [n_log_n(a["records"], b["records"]) for a, b in pairs]
    print(
        "\ngrowth exponent k (time ~ records^k) between sizes, and fitted over all"
        f" (* above n log n by more than {MARGIN})"
    )
    print(f"{'':<20}" + "".join(f"{s:>16}" for s in steps) + f"{'fitted':>10}")
    print(f"{'  n log n':<20}" + "".join(f"{k:>16.2f}" for k in limits))

    def row(label: str, values: list[tuple[float, float]]) -> None:
        ks = [exponent(n1, t1, n2, t2) for (n1, t1), (n2, t2) in itertools.pairwise(values)]
        cells = "".join(
            f"{k:>15.2f}{'*' if k > limit + MARGIN else ' '}"
            for k, limit in zip(ks, limits, strict=True)
        )
        k = fitted(values)
        print(f"{label:<20}{cells}{k:>9.2f}{'*' if k > max(limits) + MARGIN else ''}")

    row("whole run", [(r["records"], r["seconds"]) for r in runs])
    row("peak memory", [(r["records"], r["peak_pss"]) for r in runs])
    for phase in runs[0]["phases"]:
        values = [(r["records"], r["phases"].get(phase, 0.0)) for r in runs]
        if values[0][1] < MIN_PHASE_SECONDS or any(t <= 0 for _, t in values):
            continue
        row(f"  {phase}", values)


def sizes_list(text: str) -> list[int]:
    """--persons: sizes in persons, comma-separated, each at least 100."""
    try:
        sizes = sorted({int(p.replace("_", "")) for p in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if sizes[0] < 100:
        raise argparse.ArgumentTypeError(f"sizes of at least 100 persons, not {sizes[0]}")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--persons",
        type=sizes_list,
        default="100000,1000000,3000000",
        help="comma-separated sizes (default 100000,1000000,3000000)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--report", type=Path, help="print the figures of an earlier --json")
    args = parser.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()))
        return 0
    runs = []
    for persons in args.persons:
        t0 = time.perf_counter()
        runs.append(measure(persons, args.seed))
        r = runs[-1]
        print(
            f"{persons:,} persons: {r['records']:,} records, first run {r['seconds']:.1f} s,"
            f" peak PSS {r['peak_pss'] / 1e6:,.0f} MB; {r['agents']:,} agents,"
            f" {r['review_items']:,} review items ({time.perf_counter() - t0:.0f} s with"
            " the load)",
            flush=True,
        )
    report(runs)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
