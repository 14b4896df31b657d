"""Paired merge benchmark: this tree against another checkout, on copies of one loaded database.

Usage: python bench/paired.py --before PATH [--persons N] [--pairs K] [--seed S]
  PATH: a checkout of the code to compare with, with its own virtualenv, e.g.
      git worktree add ../before a9ada8c && make -C ../before .venv/bin/.installed
  (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local server; data cached in bench/out/)

Both codes get the same generated files (this tree's generator, `bench/load.py`): each side
deploys and loads them once into a template database with its own code (not timed); every run
then starts from a fresh copy of its side's template (CREATE DATABASE ... TEMPLATE), so all
runs of a side start from the same pages. Runs alternate, before / now, K pairs, nothing else
should run meanwhile. Each run is the service behind `syncpipe merge`, as `bench/merge.py`
times it: the first run (member pipeline + merge batch), a CHECKPOINT, a further 1% of
records loaded, a CHECKPOINT, the incremental run. Printed per run: seconds and phases; and a
digest of the result (agents, lineage and review items compared by the records' own keys, not
by ids; and each active agent's golden record: name, e-mails, phones, team, sources,
confidence, review flag), so that a speed-up can be shown to give the same answer: identical
digests on the two sides mean identical clusters, golden records and review queue.

Each side runs in a subprocess of its own interpreter (PATH/.venv/bin/python), which imports
its own syncpipe; this file is the worker too (--worker).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# The result, by the records' own keys: a member by its record hash, a feed row by its uuid;
# an agent by the smallest key of its records. Agent ids and member ids differ between codes.
DIGEST = """
WITH src AS (
    SELECT l.agent_id,
           CASE WHEN l.source = 'company_member' THEN 'm:' || m.record_hash
                ELSE 'f:' || l.source_id END AS skey
    FROM public.unified_agent_sources l
    LEFT JOIN public.unified_company_member m
           ON m.id = CASE WHEN l.source = 'company_member' THEN l.source_id::bigint END),
canon AS (SELECT agent_id, min(skey) AS c FROM src GROUP BY agent_id)
SELECT (SELECT md5(string_agg(s.skey || '>' || c.c, ',' ORDER BY s.skey))
        FROM src s JOIN canon c USING (agent_id)) AS lineage,
       (SELECT count(*) FROM public.new_unified_agents WHERE merged_into IS NULL) AS agents,
       (SELECT md5(string_agg(least(a.c, b.c) || '|' || greatest(a.c, b.c) || '|' || q.status,
                              ',' ORDER BY least(a.c, b.c), greatest(a.c, b.c)))
        FROM public.merge_review_queue q
        JOIN canon a ON a.agent_id = q.agent_id
        JOIN canon b ON b.agent_id = q.candidate_agent_id) AS review,
       (SELECT count(*) FROM public.merge_review_queue) AS review_items,
       (SELECT md5(string_agg(concat_ws('|', c.c, a.full_name, a.emails::text,
                                        a.phone_numbers::text, a.source_team_id, a.source_count,
                                        a.confidence_score, a.needs_review), ',' ORDER BY c.c))
        FROM public.new_unified_agents a JOIN canon c USING (agent_id)
        WHERE a.merged_into IS NULL) AS golden
"""


def _admin() -> str:
    return os.environ.get(
        "SYNCPIPE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def _dsn(dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(_admin())
    params["dbname"] = dbname
    return make_conninfo(**params)


def _admin_sql(statement: str) -> None:
    import psycopg

    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(statement)


def _checkpoint(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _digest(dsn: str) -> dict[str, Any]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute(DIGEST).fetchone()
    return dict(row) if row else {}


def _settings(dsn: str) -> Any:
    from syncpipe.settings import Settings

    return Settings(_env_file=None, database_url=dsn)  # type: ignore[call-arg,arg-type]


def worker_template(name: str, data: Path) -> dict[str, Any]:
    """Deploy and load into a new database with the code of this interpreter."""
    from syncpipe.db.database import Database
    from syncpipe.services.deploy import DeployService
    from syncpipe.services.load.loader import LoadService

    _admin_sql(f'DROP DATABASE IF EXISTS "{name}"')
    _admin_sql(f'CREATE DATABASE "{name}"')
    dsn = _dsn(name)
    settings = _settings(dsn)
    with Database(settings) as db:
        DeployService(settings, db).run()
        LoadService(settings, db).load([data])
    _checkpoint(dsn)
    return {"template": name}


def _merge(dsn: str) -> tuple[float, dict[str, float]]:
    from syncpipe.db.database import Database
    from syncpipe.services.merge.service import MergeService

    settings = _settings(dsn)
    with Database(settings) as db:
        t0 = time.perf_counter()
        result = MergeService(settings, db).run(sample=0).to_dict()
        seconds = time.perf_counter() - t0
    return seconds, {k: round(float(v), 2) for k, v in result.get("phases", {}).items()}


def worker_run(template: str, name: str, increment: Path) -> dict[str, Any]:
    """First run and incremental run on a fresh copy of the template."""
    from syncpipe.db.database import Database
    from syncpipe.services.load.loader import LoadService

    _admin_sql(f'DROP DATABASE IF EXISTS "{name}"')
    _admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    dsn = _dsn(name)
    try:
        _checkpoint(dsn)
        first, first_phases = _merge(dsn)
        first_digest = _digest(dsn)
        with Database(_settings(dsn)) as db:
            LoadService(_settings(dsn), db).load([increment])
        _checkpoint(dsn)
        inc, inc_phases = _merge(dsn)
        return {
            "first": round(first, 1),
            "first_phases": first_phases,
            "first_digest": first_digest,
            "incremental": round(inc, 2),
            "incremental_phases": inc_phases,
            "incremental_digest": _digest(dsn),
        }
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _call(python: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--worker", *args],
        capture_output=True,
        text=True,
        cwd=python.parent.parent.parent,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{python} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="checkout of the code to compare with")
    parser.add_argument("--persons", type=int, default=1_333_333)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--increment-share", type=float, default=0.01)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "template":
            out = worker_template(rest[0], Path(rest[1]))
        else:
            out = worker_run(rest[0], rest[1], Path(rest[2]))
        print(json.dumps(out))
        return 0

    if args.before is None:
        parser.error("--before PATH is required")
    before_python = args.before.resolve() / ".venv" / "bin" / "python"
    if not before_python.exists():
        parser.error(f"{before_python} does not exist (make -C {args.before} .venv/bin/.installed)")
    now_python = Path(sys.executable)

    sys.path.insert(0, str(HERE))
    from load import data_dir

    base = data_dir(args.persons, args.seed)
    increment = data_dir(max(100, round(args.persons * args.increment_share)), args.seed + 1)
    sides = {"before": before_python, "now": now_python}
    tag = uuid.uuid4().hex[:6]  # (two benches on one server keep to their own databases)
    template = {side: f"paired_{tag}_tpl_{side}" for side in sides}
    for side, python in sides.items():
        print(f"{side}: deploying and loading {base.name} with {python} ...", flush=True)
        _call(python, "template", template[side], str(base))

    runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
    try:
        for i in range(1, args.pairs + 1):
            for side, python in sides.items():
                r = _call(python, "run", template[side], f"paired_{tag}_{side}_{i}", str(increment))
                runs[side].append(r)
                print(
                    f"pair {i} {side:<6} first {r['first']:7.1f} s  incremental "
                    f"{r['incremental']:5.2f} s  agents {r['first_digest'].get('agents'):,}  "
                    f"lineage {r['first_digest'].get('lineage')}  "
                    f"review {r['first_digest'].get('review')}",
                    flush=True,
                )
                print("    " + ", ".join(f"{k} {v}" for k, v in r["first_phases"].items()))
    finally:
        for side in sides:
            _admin_sql(f'DROP DATABASE IF EXISTS "{template[side]}" WITH (FORCE)')

    first = {s: statistics.mean(r["first"] for r in runs[s]) for s in sides}
    inc = {s: statistics.mean(r["incremental"] for r in runs[s]) for s in sides}
    print(
        f"\nfirst run, mean of {args.pairs}: before {first['before']:.1f} s, now "
        f"{first['now']:.1f} s, now / before {first['now'] / first['before']:.3f}"
    )
    print(f"incremental, mean: before {inc['before']:.2f} s, now {inc['now']:.2f} s")
    same = {
        kind: len({json.dumps(r[f"{kind}_digest"], sort_keys=True) for r in runs["now"]}) == 1
        for kind in ("first", "incremental")
    }
    print(
        f"now's runs agree with each other: first run {same['first']}, "
        f"incremental {same['incremental']}"
    )
    for kind in ("first", "incremental"):
        a, b = runs["before"][0][f"{kind}_digest"], runs["now"][0][f"{kind}_digest"]
        print(f"{kind} run: the same result as before: {a == b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
