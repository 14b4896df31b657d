"""``syncpipe report``: the state of the database and of the last runs, from aggregates.

Everything here reads counts, group-bys on small columns and the ledgers, never rows one by
one, so a report on millions of agents takes about a second. Tables larger than
``EXACT_COUNT_LIMIT`` rows report the planner's estimate (flagged ``estimated``). The result's
keys are stable (``report_version``): the README documents them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from syncpipe import __version__
from syncpipe.db.database import Database
from syncpipe.db.ledger import last_run, ledger_exists
from syncpipe.settings import Settings

REPORT_VERSION = 1
EXACT_COUNT_LIMIT = 500_000
TOP_REVIEW_ITEMS = 10

TABLES = (
    "public.new_agents",
    "bronze.company_info_raw",
    "public.unified_company_member",
    "public.new_unified_agents",
    "public.unified_agent_sources",
    "public.merge_review_queue",
    "public.unified_merge_logs",
)


@dataclass
class Report:
    """What ``syncpipe report`` shows; ``to_dict()`` is the JSON format."""

    generated_at: str
    env: str
    database: dict[str, Any]
    deployed: bool
    tables: list[dict[str, Any]] = field(default_factory=list)
    agents: dict[str, Any] = field(default_factory=dict)
    confidence: list[dict[str, Any]] = field(default_factory=list)
    links_by_rule: dict[str, int] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    loads: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    deploys: list[dict[str, Any]] = field(default_factory=list)
    last_run: dict[str, Any] | None = None
    #: the strongest open review items (both agents, rule, confidence), at most TOP_REVIEW_ITEMS
    review_items: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.deployed or not any(t["rows"] for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION,
            "tool_version": __version__,
            "generated_at": self.generated_at,
            "env": self.env,
            "database": self.database,
            "deployed": self.deployed,
            "tables": self.tables,
            "agents": self.agents,
            "confidence_distribution": self.confidence,
            "links_by_rule": self.links_by_rule,
            "review": self.review,
            "review_items": self.review_items,
            "loads": self.loads,
            "merge_runs": self.runs,
            "deploys": self.deploys,
            "last_run": self.last_run,
            "notes": self.notes,
        }


class ReportService:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def build(self) -> Report:
        with self.db.connection() as conn:
            report = Report(
                generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
                env=self.settings.env,
                database={"target": self.db.target, "server_version": self.db.server_version},
                deployed=ledger_exists(conn) and _exists(conn, "public.new_unified_agents"),
            )
            report.last_run = _summary_of_run(last_run(conn))
            if not report.deployed:
                report.notes.append(
                    f"{self.db.target} has not been deployed: run `syncpipe deploy` first."
                )
                return report
            with conn.cursor(row_factory=dict_row) as cur:
                report.tables = [_table_count(cur, name) for name in TABLES]
                report.agents, report.confidence = _agents(cur)
                report.links_by_rule = _links(cur)
                report.review = _review(cur)
                report.review_items = _top_review_items(conn)
                report.loads = _loads(cur)
                report.runs = _runs(cur)
                report.deploys = _deploys(cur)
            if report.empty:
                report.notes.append(
                    "The database is deployed but holds no data yet: run "
                    "`syncpipe load` and `syncpipe merge`."
                )
            elif not report.agents.get("live"):
                report.notes.append("Data is loaded but not merged yet: run `syncpipe merge`.")
        return report


def _summary_of_run(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """Steps and pool use of this database's last deploy or full run (from its ledger)."""
    if not data:
        return None
    return {
        "kind": data.get("kind"),
        "status": data.get("status"),
        "target": data.get("target") or (data.get("database") or {}).get("target"),
        "started_at": data.get("started_at"),
        "duration_s": data.get("duration_s"),
        "steps": [
            {k: s.get(k) for k in ("name", "status", "duration_s")}
            for s in data.get("steps", [])
            if isinstance(s, dict)
        ],
        "pool": (data.get("database") or {}).get("pool"),
    }


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _table_count(cur: psycopg.Cursor[dict[str, Any]], name: str) -> dict[str, Any]:
    row = cur.execute(
        "SELECT c.reltuples::bigint AS estimate FROM pg_class c WHERE c.oid = to_regclass(%s)",
        (name,),
    ).fetchone()
    if row is None:
        return {"table": name, "rows": 0, "estimated": False, "missing": True}
    estimate = int(row["estimate"])
    if estimate > EXACT_COUNT_LIMIT:
        return {"table": name, "rows": estimate, "estimated": True, "missing": False}
    schema, table = name.split(".")
    counted = cur.execute(
        sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(schema, table))
    ).fetchone()
    rows = int(counted["n"]) if counted else 0
    return {"table": name, "rows": rows, "estimated": False, "missing": False}


def _agents(cur: psycopg.Cursor[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = cur.execute(
        """
        SELECT confidence_score AS score, count(*) AS agents,
               count(*) FILTER (WHERE needs_review) AS needs_review,
               count(*) FILTER (WHERE NOT needs_review AND source_count = 1) AS single,
               count(*) FILTER (WHERE NOT needs_review AND source_count < 1) AS empty,
               sum(source_count) AS sources,
               count(*) FILTER (WHERE source_count > 1) AS multi_source
        FROM public.new_unified_agents
        WHERE merged_into IS NULL
        GROUP BY confidence_score
        ORDER BY confidence_score
        """
    ).fetchall()
    retired = cur.execute(
        "SELECT count(*) AS n FROM public.new_unified_agents WHERE merged_into IS NOT NULL"
    ).fetchone()
    live = sum(int(r["agents"]) for r in rows)
    sources = sum(int(r["sources"] or 0) for r in rows)
    multi = sum(int(r["multi_source"]) for r in rows)
    agents = {
        "live": live,
        "retired": int(retired["n"]) if retired else 0,
        "needs_review": sum(int(r["needs_review"]) for r in rows),
        # four outcomes that add up to `live`: one source record (nothing was merged),
        # merged automatically (several records, no doubt left), needs review, and no source
        # record left (every record of the agent was deleted from its source)
        "single_record": sum(int(r["single"]) for r in rows),
        "merged_automatically": sum(_merged(r) for r in rows),
        "without_record": sum(int(r["empty"]) for r in rows),
        "source_records": sources,
        "sources_per_agent": round(sources / live, 3) if live else 0.0,
        "duplicate_rate": round(1 - live / sources, 4) if sources else 0.0,
        "agents_with_several_sources": multi,
    }
    confidence = [
        {
            "score": int(r["score"]),
            "agents": int(r["agents"]),
            "needs_review": int(r["needs_review"]),
            "single_record": int(r["single"]),
            "merged_automatically": _merged(r),
            "without_record": int(r["empty"]),
        }
        for r in rows
    ]
    return agents, confidence


def _merged(row: dict[str, Any]) -> int:
    """Agents of a confidence row merged automatically: the ones of no other outcome."""
    return int(row["agents"]) - int(row["needs_review"]) - int(row["single"]) - int(row["empty"])


def _links(cur: psycopg.Cursor[dict[str, Any]]) -> dict[str, int]:
    rows = cur.execute(
        "SELECT match_rule AS rule, count(*) AS n FROM public.unified_agent_sources "
        "GROUP BY match_rule ORDER BY count(*) DESC"
    ).fetchall()
    return {r["rule"]: int(r["n"]) for r in rows}


def _review(cur: psycopg.Cursor[dict[str, Any]]) -> dict[str, Any]:
    rows = cur.execute(
        "SELECT status, count(*) AS n FROM public.merge_review_queue GROUP BY status"
    ).fetchall()
    counts = {r["status"]: int(r["n"]) for r in rows}
    return {
        "open": counts.get("open", 0),
        "accepted": counts.get("accepted", 0),
        "rejected": counts.get("rejected", 0),
    }


def _top_review_items(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The strongest open review items, as `syncpipe review` lists them."""
    from syncpipe.services.merge.review import open_items

    items, _ = open_items(conn, TOP_REVIEW_ITEMS)
    return [item.to_dict() for item in items]


def _loads(cur: psycopg.Cursor[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = cur.execute(
        """
        SELECT file_name, table_name, rows_read, inserted, updated, rejected,
               duration_ms, finished_at
        FROM syncpipe.load_files WHERE status <> 'checking'  -- (a dry run under way)
        ORDER BY id DESC LIMIT 20
        """
    ).fetchall()
    return [
        {
            "file": r["file_name"],
            "table": r["table_name"],
            "rows_read": int(r["rows_read"]),
            "inserted": int(r["inserted"]),
            "updated": int(r["updated"]),
            "rejected": int(r["rejected"]),
            "duration_s": round(r["duration_ms"] / 1000, 3),
            "rows_per_s": round(r["rows_read"] / max(r["duration_ms"], 1) * 1000),
            "finished_at": r["finished_at"].isoformat(timespec="seconds"),
        }
        for r in reversed(rows)
    ]


def _runs(cur: psycopg.Cursor[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = cur.execute(
        """
        SELECT id, run_kind, status, started_at, finished_at, total_processed, error_message,
               counts
        FROM public.unified_merge_logs ORDER BY id DESC LIMIT 30
        """
    ).fetchall()
    runs = []
    for r in reversed(rows):
        counts = r["counts"] or {}
        duration = (
            (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
        )
        runs.append(
            {
                "id": int(r["id"]),
                "kind": r["run_kind"],
                "status": r["status"],
                "started_at": r["started_at"].isoformat(timespec="seconds"),
                "duration_s": round(duration, 3) if duration is not None else None,
                "records": int(r["total_processed"]),
                "agents_created": counts.get("agents_created"),
                "review_items_added": counts.get("review_items_added"),
                "links": counts.get("links") or {},
                "error": r["error_message"],
            }
        )
    return runs


def _deploys(cur: psycopg.Cursor[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = cur.execute(
        """
        SELECT id, env, status, started_at, finished_at, files_applied, error
        FROM syncpipe.deploy_runs ORDER BY id DESC LIMIT 10
        """
    ).fetchall()
    return [
        {
            "id": int(r["id"]),
            "env": r["env"],
            "status": r["status"],
            "started_at": r["started_at"].isoformat(timespec="seconds"),
            "duration_s": round((r["finished_at"] - r["started_at"]).total_seconds(), 3),
            "files_applied": int(r["files_applied"]),
            "error": r["error"],
        }
        for r in reversed(rows)
    ]
