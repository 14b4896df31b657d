"""One very large team of similar names: is the merge bounded by the data, not the worst block?

Usage: python bench/team_block.py [--members 1000 --members 4000 --members 20000]
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server)

For each size: one team page with N members drawn from 12 given names x 2,340 family names
(15 stems and two letters: many a typo apart), a
third of them with a typo, a nickname or an initial, no contacts at all (the worst case: names
are the only evidence), and a feed row for every tenth member. Prints the merge's wall time and
the review items it queued.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from _common import scratch_database, syncpipe

GIVEN = [
    "john",
    "james",
    "robert",
    "michael",
    "william",
    "david",
    "mary",
    "linda",
    "susan",
    "karen",
    "lisa",
    "nancy",
]
FAMILY = [
    "smith",
    "jones",
    "brown",
    "davis",
    "miller",
    "wilson",
    "moore",
    "taylor",
    "anderson",
    "thomas",
    "jackson",
    "white",
    "harris",
    "martin",
    "garcia",
]
NICK = {"robert": "bob", "william": "bill", "michael": "mike", "james": "jim", "susan": "sue"}


def _name(rng: random.Random) -> str:
    # family names that look alike: a common stem and two letters ("Smithab", "Smithac")
    tail = rng.choice("abcdefghijklmnopqrstuvwxyz") + rng.choice("aeiouy")
    given, family = rng.choice(GIVEN), rng.choice(FAMILY) + tail
    r = rng.random()
    if r < 0.1 and given in NICK:
        given = NICK[given]
    elif r < 0.2:
        i = rng.randrange(1, len(family) - 1)
        family = family[:i] + family[i + 1 :]
    elif r < 0.3:
        given = given[0]
    return f"{given.capitalize()} {family.capitalize()}"


def write(folder: Path, members: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [_name(rng) for _ in range(members)]
    with (folder / "raw_company_info.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["research_uuid", "team_id", "website", "team_members"])
        page = [{"name": n, "title": f"Agent {i}"} for i, n in enumerate(names)]
        w.writerow([str(uuid.UUID(int=rng.getrandbits(128))), "big-team", "", json.dumps(page)])
    with (folder / "new_agents.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["supabase_uuid", "full_name", "email_clean", "phone_digits", "team_id", "social_links"]
        )
        for n in names[::10]:
            w.writerow([str(uuid.UUID(int=rng.getrandbits(128))), n, "[]", "[]", "big-team", "{}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, action="append")
    args = parser.parse_args()
    print(f"{'members':>8} {'records':>8} {'merge s':>8} {'agents':>8} {'review items':>13}")
    for members in args.members or [1000, 4000, 20000]:
        with tempfile.TemporaryDirectory(prefix="syncpipe-team-") as tmp:
            data = Path(tmp)
            write(data, members)
            with scratch_database("syncpipe_bench_team") as dsn:
                logs = str(data / "logs")
                syncpipe(["deploy", "--no-verify"], dsn, SYNCPIPE_LOGS_DIR=logs)
                syncpipe(["load", str(data)], dsn, SYNCPIPE_LOGS_DIR=logs)
                t0 = time.perf_counter()
                syncpipe(["merge"], dsn, SYNCPIPE_LOGS_DIR=logs)
                seconds = time.perf_counter() - t0
                with psycopg.connect(dsn) as conn:
                    row = conn.execute(
                        "SELECT (SELECT count(*) FROM unified_agent_sources),"
                        " (SELECT count(*) FROM new_unified_agents WHERE merged_into IS NULL),"
                        " (SELECT count(*) FROM merge_review_queue)"
                    ).fetchone()
            assert row is not None
            print(
                f"{members:>8,} {row[0]:>8,} {seconds:>8.1f} {row[1]:>8,} {row[2]:>13,}", flush=True
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
