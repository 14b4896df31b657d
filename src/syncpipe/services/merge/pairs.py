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

# The review pairs with their outcome: "review", or "kept apart" where the two sides belong
# to agents a person rejected as two people (the real run queues no item for them). A node's
# agent: the label of its component (the lowest node: an agent when it holds one).
_REVIEWED = """
    SELECT r.*, CASE WHEN d.agent_low IS NULL THEN 'review' ELSE 'kept apart' END AS outcome
    FROM syncpipe_work.sp_review r
    LEFT JOIN syncpipe_work.sp_comp ca ON ca.node = r.a
    LEFT JOIN syncpipe_work.sp_comp cb ON cb.node = r.b
    LEFT JOIN (SELECT agent_low, agent_high FROM syncpipe_internal.merge_decisions_now()
               WHERE decision = 'rejected') d
           ON d.agent_low = least(coalesce(ca.label, r.a), coalesce(cb.label, r.b))
          AND d.agent_high = greatest(coalesce(ca.label, r.a), coalesce(cb.label, r.b))
"""

_PAIRS = f"""
WITH pairs AS (
    SELECT l.a, l.b, l.rule, l.conf,
           CASE WHEN l.conf > %(auto)s THEN 'merge'
                WHEN r.a IS NOT NULL THEN r.outcome
                ELSE 'already together' END AS outcome,
           l.detail AS evidence
    FROM syncpipe_work.sp_links l
    LEFT JOIN ({_REVIEWED}) r ON r.a = l.a AND r.b = l.b AND r.rule = l.rule
    UNION ALL
    -- the review pairs that are no link: similar names, and name links held back because
    -- the two records' own phones or e-mails differ
    SELECT r.a, r.b, r.rule, r.conf, r.outcome,
           CASE WHEN r.rule = 'fuzzy_name'
                THEN (r.evidence ->> 'a_name') || ' ~ ' || (r.evidence ->> 'b_name')
                     || ' (similarity ' || (r.evidence ->> 'similarity') || ')'
                ELSE r.evidence ->> 'name' END
    FROM ({_REVIEWED}) r
    WHERE NOT EXISTS (SELECT 1 FROM syncpipe_work.sp_links l
                      WHERE l.a = r.a AND l.b = r.b AND l.rule = r.rule)
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


#: The seed of the dry run's sample: the same plan shows the same pairs (``merge --seed``).
DEFAULT_SEED = 1

# The pairs alone (no description: only the few sampled nodes are described, by _DESCRIBE).
_PAIRS_ONLY = _PAIRS[
    _PAIRS.index("WITH pairs AS (") + len("WITH pairs AS (") : _PAIRS.index("),\nnodes AS")
]

# The strength of a pair's evidence within its rule, for "borderline first": a contact shared
# by more records is weaker evidence; a fuzzy pair's strength is its name similarity.
# The sample, in passes that stay linear in the number of pairs (a first run of a million
# persons proposes millions): a contact's strength by one hash aggregate; the borderline pairs
# of each (outcome, rule) by a top-N per group; the random pick across the range of evidence
# from a thinned, seeded subset (about a thousand pairs a group), ranked into tiles.
_SAMPLE = f"""
WITH pairs AS MATERIALIZED ({_PAIRS_ONLY}),
counts AS (
    SELECT rule, evidence, count(*) AS n FROM pairs WHERE rule <> 'fuzzy_name'
    GROUP BY rule, evidence
),
scored AS MATERIALIZED (
    SELECT p.a AS a_node, p.b AS b_node, p.outcome, p.rule, p.conf AS confidence, p.evidence,
           CASE WHEN p.rule = 'fuzzy_name'
                THEN coalesce(substring(p.evidence FROM 'similarity ([0-9.]+)')::numeric, 0)
                ELSE -c.n END AS strength,
           hashint8extended(p.a * 1000003 + p.b, %(seed)s) AS shuffle
    FROM pairs p
    LEFT JOIN counts c ON c.rule = p.rule AND c.evidence = p.evidence
),
groups AS (SELECT outcome, rule, count(*) AS n FROM scored GROUP BY outcome, rule),
border AS (
    SELECT b.*, row_number() OVER (PARTITION BY b.outcome, b.rule ORDER BY b.edge, b.shuffle)
               AS border
    FROM groups g
    CROSS JOIN LATERAL (
        SELECT s.*, CASE WHEN s.outcome = 'review' THEN -s.strength ELSE s.strength END AS edge
        FROM scored s WHERE s.outcome = g.outcome AND s.rule = g.rule
        ORDER BY 9, s.shuffle
        LIMIT %(borderline)s
    ) b
),
thin AS (
    SELECT s.* FROM scored s JOIN groups g USING (outcome, rule)
    WHERE (s.shuffle & 1073741823) %% greatest(1, g.n / 1000) = 0
),
picked AS (
    SELECT t.*, row_number() OVER (PARTITION BY outcome, rule, tile ORDER BY shuffle) AS in_tile
    FROM (SELECT x.*, ntile(%(per_rule)s) OVER (PARTITION BY outcome, rule
                                               ORDER BY strength, shuffle) AS tile
          FROM thin x) t
)
SELECT a_node, b_node, outcome, rule, confidence, evidence, border FROM border
UNION ALL
SELECT a_node, b_node, outcome, rule, confidence, evidence, %(borderline)s + tile
FROM picked WHERE in_tile = 1
"""

# Names, teams, emails and phones of the few nodes in the sample.
_DESCRIBE = """
SELECT n.node,
       CASE WHEN n.node >= m.node_offset THEN p.source ELSE 'agent' END AS kind,
       CASE WHEN n.node >= m.node_offset THEN p.source_id ELSE n.node::text END AS id,
       CASE WHEN n.node >= m.node_offset THEN p.full_name ELSE a.full_name END AS name,
       CASE WHEN n.node >= m.node_offset THEN p.team_id ELSE a.source_team_id END AS team_id,
       CASE WHEN n.node >= m.node_offset
            THEN ARRAY(SELECT k.value FROM syncpipe_work.sp_pkeys k
                       WHERE k.pid = p.pid AND k.kind = 'e' ORDER BY k.value)
            ELSE a.emails END AS emails,
       CASE WHEN n.node >= m.node_offset
            THEN ARRAY(SELECT k.value FROM syncpipe_work.sp_pkeys k
                       WHERE k.pid = p.pid AND k.kind = 'p' ORDER BY k.value)
            ELSE a.phone_numbers END AS phones
FROM unnest(%(nodes)s::bigint[]) AS n(node)
CROSS JOIN syncpipe_work.sp_meta m
LEFT JOIN syncpipe_work.sp_pend p ON n.node >= m.node_offset AND p.pid = n.node - m.node_offset
LEFT JOIN public.new_unified_agents a ON n.node < m.node_offset AND a.agent_id = n.node
"""


def sample_pairs(
    conn: psycopg.Connection[Any],
    auto_threshold: int,
    per_rule: int = 5,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """Up to ``per_rule`` pairs of every outcome and rule: the borderline ones first (the
    weakest automatic merges, the strongest review items), then a seeded random pick from
    each part of the range of evidence. Each side with name, team, emails, phones, full id."""
    if not _have_plan(conn) or per_rule <= 0:
        return []
    borderline = max(1, (per_rule + 1) // 2)
    params = {"auto": auto_threshold, "per_rule": per_rule, "seed": seed, "borderline": borderline}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SAMPLE, params).fetchall()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        seen: set[tuple[str, str, int, int]] = set()  # (a borderline pair may be drawn too)
        for row in sorted(rows, key=lambda r: (r["border"] > borderline, r["border"])):
            key = (row["outcome"], row["rule"], row["a_node"], row["b_node"])
            chosen = groups.get(key[:2], [])
            if len(chosen) < per_rule and key not in seen:
                seen.add(key)
                groups[key[:2]] = chosen
                row["why"] = "borderline" if row["border"] <= borderline else "random"
                chosen.append(row)
        nodes = sorted({n for g in groups.values() for r in g for n in (r["a_node"], r["b_node"])})
        described = {d["node"]: d for d in cur.execute(_DESCRIBE, {"nodes": nodes}).fetchall()}
    order = {"merge": 0, "review": 1, "kept apart": 2, "already together": 3}
    out: list[dict[str, Any]] = []
    for (outcome, _rule), chosen in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], 9), -int(kv[1][0]["confidence"]))
    ):
        for row in chosen:
            a, b = described[row["a_node"]], described[row["b_node"]]
            out.append(
                {
                    "outcome": outcome,
                    "rule": row["rule"],
                    "confidence": row["confidence"],
                    "evidence": row["evidence"],
                    "why": row["why"],
                    **{f"a_{k}": a[k] for k in ("kind", "id", "name", "team_id")},
                    "a_emails": list(a["emails"] or []),
                    "a_phones": list(a["phones"] or []),
                    **{f"b_{k}": b[k] for k in ("kind", "id", "name", "team_id")},
                    "b_emails": list(b["emails"] or []),
                    "b_phones": list(b["phones"] or []),
                }
            )
    return out


_EXISTING = """
WITH comp AS (
    SELECT c.label, c.node, c.node < m.node_offset AS existing
    FROM syncpipe_work.sp_comp c CROSS JOIN syncpipe_work.sp_meta m
),
groups AS (
    SELECT label, min(node) FILTER (WHERE existing) AS survivor,
           count(*) FILTER (WHERE existing) AS agents,
           count(*) FILTER (WHERE NOT existing) AS records
    FROM comp GROUP BY label
    HAVING count(*) FILTER (WHERE existing) > 0
)
SELECT g.survivor, s.full_name AS survivor_name, g.records,
       ARRAY(SELECT c.node FROM comp c
             WHERE c.label = g.label AND c.existing AND c.node <> g.survivor
             ORDER BY c.node) AS retired,
       md5(%(seed)s::text || ':' || g.survivor) AS shuffle
FROM groups g
JOIN public.new_unified_agents s ON s.agent_id = g.survivor
WHERE g.records > 0 OR g.agents > 1
"""


def kept_apart(conn: psycopg.Connection[Any]) -> int:
    """The plan's review pairs between agents a person rejected as two people: the real run
    queues no item for them (a dry run counted them as pairs for review)."""
    if not _have_plan(conn):
        return 0
    row = conn.execute(
        f"SELECT count(*) FROM ({_REVIEWED}) r WHERE r.outcome = 'kept apart'"
    ).fetchone()
    return int(row[0]) if row else 0


def existing_agents(
    conn: psycopg.Connection[Any], per_kind: int = 5, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """What the plan does to agents already in the master table: how many new records join
    (``joined``), how many agents become one with another (``retired``), and a seeded sample
    of each with names (the lowest agent id survives)."""
    if not _have_plan(conn):
        return {}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_EXISTING, {"seed": seed}).fetchall()
        retired_ids = sorted({r for row in rows for r in row["retired"]})
        names = {
            agent_id: name
            for agent_id, name in conn.execute(
                "SELECT agent_id, full_name FROM public.new_unified_agents "
                "WHERE agent_id = ANY(%s)",
                (retired_ids,),
            ).fetchall()
        }
    rows.sort(key=lambda r: r["shuffle"])
    joined = [r for r in rows if r["records"] > 0]
    retiring = [r for r in rows if r["retired"]]
    return {
        "joined": len(joined),
        "records_joining": sum(int(r["records"]) for r in joined),
        "retired": sum(len(r["retired"]) for r in rows),
        "joined_sample": [
            {"agent_id": r["survivor"], "name": r["survivor_name"], "new_records": r["records"]}
            for r in joined[:per_kind]
        ],
        "retired_sample": [
            {
                "agent_id": agent_id,
                "name": names.get(agent_id),
                "into": r["survivor"],
                "into_name": r["survivor_name"],
            }
            for r in retiring[:per_kind]
            for agent_id in r["retired"][:1]
        ],
    }


def export_pairs(conn: psycopg.Connection[Any], auto_threshold: int, path: Path) -> int:
    """Write every proposed pair to ``path`` (CSV with a header); returns the number of pairs."""
    try:
        handle = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot write the pairs file {path}: {exc.strerror or exc}.") from None
    count = 0
    try:
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
    except OSError as exc:  # (a full disk, at a write or at the close)
        raise ConfigError(f"Cannot write the pairs file {path}: {exc.strerror or exc}.") from None
    return count
