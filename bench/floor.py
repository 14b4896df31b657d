"""The physical floor of the merge (issue 16): the unavoidable work, timed in PostgreSQL alone.

Usage: python bench/floor.py DSN [--phases FILE] [--repeat 1]
  DSN: a database the merge benchmark loaded and merged and kept (``python bench/merge.py
  --keep``; FILE: the first run's result it wrote next to it, to print the comparison).

On the same loaded data and the merge's result, with the settings the merge runs with
(``work_mem`` 128 MB, ``maintenance_work_mem`` 512 MB, cheaper parallel start-up), times:
  read       each source table once, every column detoasted (``count(t)`` of the whole row);
  explode    the pages' member arrays unnested (``jsonb_array_elements``), nothing else;
  sort       every source record by (team, name), and every record's e-mail/phone key
             (``EXPLAIN ANALYZE`` of the ORDER BY: the sort runs, no row leaves the server);
  write      the members, agents, contact keys and lineage tables, as many rows as the result
             has: ``CREATE TABLE AS`` logged (as the real tables are) and ``UNLOGGED``, then the
             real tables' indexes built on the logged copy.
The inputs of the sorts (one narrow table of records, one of keys) are built first, untimed.
Each figure is the best of --repeat runs. With --phases, prints the merge's phases next to the
floor of each (markdown, for bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import psycopg

SETTINGS = """
SET work_mem = '128MB';
SET maintenance_work_mem = '512MB';
SET parallel_setup_cost = 100;
SET parallel_tuple_cost = 0.01;
"""

PREPARE = """
DROP SCHEMA IF EXISTS floor_bench CASCADE;
CREATE SCHEMA floor_bench;
CREATE UNLOGGED TABLE floor_bench.records AS
    SELECT team_id COLLATE "C" AS team_id, name_normalized COLLATE "C" AS name
    FROM public.unified_company_member
    UNION ALL
    SELECT team_id COLLATE "C", lower(full_name) COLLATE "C" FROM public.new_agents;
CREATE UNLOGGED TABLE floor_bench.keys AS
    SELECT 'e'::"char" AS kind, e COLLATE "C" AS value, id AS rec
    FROM public.unified_company_member, unnest(email_normalized) e
    UNION ALL
    SELECT 'p', p, id FROM public.unified_company_member, unnest(phone_normalized) p
    UNION ALL
    SELECT 'e', lower(e), n FROM (SELECT row_number() OVER () AS n, * FROM public.new_agents) a,
        jsonb_array_elements_text(a.email_clean) e
    UNION ALL
    SELECT 'p', p, n FROM (SELECT row_number() OVER () AS n, * FROM public.new_agents) a,
        jsonb_array_elements_text(a.phone_digits) p;
VACUUM ANALYZE floor_bench.records;
VACUUM ANALYZE floor_bench.keys;
"""

#: figure -> SQL; the figure's kind decides how it is timed
READS = {
    "read new_agents": "SELECT count(t) FROM public.new_agents t",
    "read company_info_raw": "SELECT count(t) FROM bronze.company_info_raw t",
    "explode members": (
        "SELECT count(e) FROM bronze.company_info_raw c, jsonb_array_elements(c.team_members) e"
    ),
}
SORTS = {
    "sort records by team, name": (
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM floor_bench.records ORDER BY team_id, name"
    ),
    "sort keys by kind, value": (
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM floor_bench.keys ORDER BY kind, value, rec"
    ),
}
WRITES = {
    "members": "public.unified_company_member",
    "agents": "public.new_unified_agents",
    "contact keys": "public.merge_agent_contacts",
    "lineage": "public.unified_agent_sources",
}


def _timed(conn: psycopg.Connection[Any], statement: str) -> float:
    with conn.transaction():
        conn.execute(SETTINGS)
        t0 = time.perf_counter()
        conn.execute(statement)
        return time.perf_counter() - t0


def _indexes(conn: psycopg.Connection[Any], table: str, copy: str) -> list[str]:
    rows = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE format('%%I.%%I', schemaname, tablename) = %s",
        (table,),
    ).fetchall()
    defs = []
    for (definition,) in rows:
        body = definition.split(" ON ", 1)[1]
        body = body.replace(table, copy, 1)
        unique = "UNIQUE " if definition.startswith("CREATE UNIQUE") else ""
        defs.append(f"CREATE {unique}INDEX ON {body}")
    return defs


def measure(dsn: str, repeat: int) -> tuple[dict[str, float], dict[str, int]]:
    floors: dict[str, float] = {}
    rows: dict[str, int] = {}

    def best(name: str, fn: Any) -> None:
        floors[name] = min(fn() for _ in range(repeat))
        print(f"  {name:<42} {floors[name]:7.2f} s", flush=True)

    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in WRITES.values():
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            rows[table] = int(row[0]) if row else 0
        t0 = time.perf_counter()
        for statement in PREPARE.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        print(f"inputs of the sorts built in {time.perf_counter() - t0:.1f} s (not timed)")
        for name, statement in READS.items():
            best(name, lambda s=statement: _timed(conn, s))
        for name, statement in SORTS.items():
            best(name, lambda s=statement: _timed(conn, s))
        for name, table in WRITES.items():
            copy = f"floor_bench.{table.split('.')[1]}"
            for kind in ("UNLOGGED ", ""):

                def write(k: str = kind, t: str = table, c: str = copy) -> float:
                    conn.execute(f"DROP TABLE IF EXISTS {c}")
                    return _timed(conn, f"CREATE {k}TABLE {c} AS SELECT * FROM {t}")

                label = f"write {name} ({rows[table]:,} rows){', unlogged' if kind else ''}"
                best(label, write)
            # the logged copy is left: build the real table's indexes on it
            defs = _indexes(conn, table, copy)

            def build(d: list[str] = defs, c: str = copy) -> float:
                for index in conn.execute(
                    "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
                    (c,),
                ).fetchall():
                    conn.execute(f"DROP INDEX {index[0]}")
                return sum(_timed(conn, statement) for statement in d)

            best(f"index {name} ({len(defs)} indexes)", build)
        conn.execute("DROP SCHEMA floor_bench CASCADE")
    return floors, rows


#: the merge's phase -> the floor figures its work cannot go below
PHASE_FLOORS = {
    "explode_members": ["explode members"],
    "store_members": ["write members", "index members"],
    "normalize": ["read new_agents"],
    "candidates": ["sort records by team, name"],
    "shared_contacts": ["sort keys by kind, value"],
    "agents": ["write agents", "write contact keys", "index contact keys"],
    "lineage": ["write lineage", "index lineage", "index agents"],
}


def _floor_of(floors: dict[str, float], prefix: str) -> float:
    # the logged write (the real tables are logged), not the unlogged one
    matches = [v for k, v in floors.items() if k.startswith(prefix) and "unlogged" not in k]
    return matches[0] if matches else 0.0


def compare(floors: dict[str, float], phases: dict[str, float]) -> None:
    print("\n| phase | time | floor (what) | floor | ratio |\n|---|---|---|---|---|")
    total = sum(phases.values())
    total_floor = 0.0
    for phase, seconds in phases.items():
        parts = PHASE_FLOORS.get(phase, [])
        floor = sum(_floor_of(floors, p) for p in parts)
        total_floor += floor
        what = " + ".join(parts) if parts else "(none measured)"
        ratio = f"{seconds / floor:.1f}" if floor else ""
        print(f"| {phase} | {seconds:.1f} s | {what} | {floor:.1f} s | {ratio} |")
    print(
        f"| **total** | **{total:.1f} s** | | **{total_floor:.1f} s** | "
        f"**{total / total_floor:.1f}** |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn")
    parser.add_argument("--phases", type=Path, help="the first run's result (JSON)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"floor on {re.sub(r'//[^@/]*@', '//', args.dsn)} (best of {args.repeat})")
    floors, _ = measure(args.dsn, args.repeat)
    if args.phases:
        compare(floors, json.loads(args.phases.read_text())["phases"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
