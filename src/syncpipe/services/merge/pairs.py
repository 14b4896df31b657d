"""The pairs a merge proposes, with their evidence, read from the merge's work tables.

``merge_plan()`` leaves ``sp_links`` (every link between two graph nodes), ``sp_review`` (the
doubtful pairs) and ``sp_pend`` (the pending source records) in the schema ``syncpipe_work``
when the batch is called with ``keep_work``; a node is an existing agent (its agent_id) or a
pending record (node_offset + pid). This module turns them into readable pairs, for the
dry-run sample and for ``--output pairs.csv``. It must run in the merge's transaction, before
the tables are dropped (``merge_work_clear()``, or the rollback of a dry run).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from syncpipe.core.errors import ConfigError

PAIR_COLUMNS = (
    "outcome",
    "rule",
    "confidence",
    "evidence",
    "a_kind",
    "a_id",
    "a_name",
    "a_team_id",
    "b_kind",
    "b_id",
    "b_name",
    "b_team_id",
)

# A node described: an agent already in the master table, or a pending source record.
_NODE = """
    SELECT n.node,
           CASE WHEN n.node >= m.node_offset THEN p.source ELSE 'agent' END AS kind,
           CASE WHEN n.node >= m.node_offset THEN p.source_id ELSE n.node::text END AS id,
           CASE WHEN n.node >= m.node_offset THEN p.full_name ELSE a.full_name END AS name,
           CASE WHEN n.node >= m.node_offset THEN p.team_id ELSE a.source_team_id END AS team_id
    FROM nodes n
    CROSS JOIN syncpipe_work.sp_meta m
    LEFT JOIN syncpipe_work.sp_pend p
           ON n.node >= m.node_offset AND p.pid = n.node - m.node_offset
    LEFT JOIN public.new_unified_agents a ON n.node < m.node_offset AND a.agent_id = n.node
"""

_PAIRS = f"""
WITH pairs AS (
    SELECT l.a, l.b, l.rule, l.conf,
           CASE WHEN l.conf > %(auto)s THEN 'merge'
                WHEN r.a IS NOT NULL THEN 'review'
                ELSE 'already together' END AS outcome,
           l.detail AS evidence
    FROM syncpipe_work.sp_links l
    LEFT JOIN syncpipe_work.sp_review r ON r.a = l.a AND r.b = l.b AND r.rule = l.rule
    UNION ALL
    SELECT r.a, r.b, r.rule, r.conf, 'review',
           (r.evidence ->> 'a_name') || ' ~ ' || (r.evidence ->> 'b_name')
               || ' (similarity ' || (r.evidence ->> 'similarity') || ')'
    FROM syncpipe_work.sp_review r
    WHERE r.rule = 'fuzzy_name'
),
nodes AS (SELECT a AS node FROM pairs UNION SELECT b FROM pairs),
described AS ({_NODE})
SELECT p.outcome, p.rule, p.conf AS confidence, p.evidence,
       x.kind AS a_kind, x.id AS a_id, x.name AS a_name, x.team_id AS a_team_id,
       y.kind AS b_kind, y.id AS b_id, y.name AS b_name, y.team_id AS b_team_id
FROM pairs p
JOIN described x ON x.node = p.a
JOIN described y ON y.node = p.b
"""


@dataclass(frozen=True)
class PairSample:
    """Up to ``per_rule`` pairs for each (outcome, rule), and how many were exported."""

    pairs: list[dict[str, Any]]
    exported: int | None = None
    output: str | None = None


def _have_plan(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('syncpipe_work.sp_links') IS NOT NULL").fetchone()
    return bool(row and row[0])


def sample_pairs(
    conn: psycopg.Connection[Any], auto_threshold: int, per_rule: int = 5
) -> list[dict[str, Any]]:
    """A few pairs of every rule and outcome, strongest rules first."""
    if not _have_plan(conn):
        return []
    query = f"""
        SELECT * FROM (
            SELECT q.*, row_number() OVER (PARTITION BY outcome, rule
                                           ORDER BY a_name, b_name, a_id, b_id) AS nth
            FROM ({_PAIRS}) q
        ) s
        WHERE nth <= %(per_rule)s
        ORDER BY confidence DESC, outcome, rule, nth
    """
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {"auto": auto_threshold, "per_rule": per_rule}).fetchall()
    for row in rows:
        row.pop("nth", None)
    return rows


def export_pairs(conn: psycopg.Connection[Any], auto_threshold: int, path: Path) -> int:
    """Write every proposed pair to ``path`` (CSV with a header); returns the number of pairs."""
    try:
        handle = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot write the pairs file {path}: {exc.strerror or exc}.") from None
    count = 0
    with handle:
        writer = csv.writer(handle)
        writer.writerow(PAIR_COLUMNS)
        if not _have_plan(conn):
            return 0
        with conn.cursor(name="syncpipe_pairs") as cur:
            cur.itersize = 10_000
            cur.execute(
                f"SELECT * FROM ({_PAIRS}) q ORDER BY confidence DESC, rule, a_id, b_id",
                {"auto": auto_threshold},
            )
            for row in cur:
                writer.writerow(row)
                count += 1
    return count
