"""``syncpipe review``: the open review items, and a person's decisions on them.

Deciding goes through the database function ``review_decide()`` (Supabase users call it by RPC
too): accept merges the two agents, reject keeps them apart on every later run; both record who
and when.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from syncpipe.core.errors import (
    ConfigError,
    JobFailedError,
    LockTimeoutError,
    NotDeployedError,
)
from syncpipe.db.database import Database
from syncpipe.db.locks import (
    MERGE_OR_DECISION,
    LockKind,
    describe_row_holders,
    lock_timeout_setting,
    xact_lock,
)


@dataclass(frozen=True)
class Side:
    """One agent of a review pair, as the master table has it now."""

    agent_id: int
    survivor: int
    full_name: str | None
    team_id: str | None
    emails: list[str]
    phones: list[str]
    sources: int

    def describe(self) -> str:
        lines = [f"{self.full_name or '(no name)'}  #{self.agent_id}"]
        if self.survivor != self.agent_id:
            lines[0] += f" (now #{self.survivor})"
        lines.append(f"team {self.team_id or '-'}; {self.sources} source record(s)")
        if self.emails:
            lines.append(", ".join(self.emails))
        if self.phones:
            lines.append(", ".join(self.phones))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "current_agent_id": self.survivor,
            "full_name": self.full_name,
            "team_id": self.team_id,
            "emails": self.emails,
            "phones": self.phones,
            "sources": self.sources,
        }


@dataclass(frozen=True)
class ReviewItem:
    id: int
    rule: str
    confidence: int
    evidence: dict[str, Any]
    created_at: str
    side_a: Side
    side_b: Side
    weight: float | None = None

    def evidence_text(self) -> str:
        """Why the pair was proposed: the weight and its parts in words, then the records."""
        e = self.evidence
        lines: list[str] = []
        if self.weight is not None:
            lines.append(f"weight {self.weight:+.1f}")
        parts = e.get("parts")
        if isinstance(parts, list) and parts:
            lines.extend(f"  {part}" for part in parts)
        if "similarity" in e:
            lines.append(
                f"{e.get('a_name')} ~ {e.get('b_name')} (similarity {e.get('similarity')})"
            )
        elif not parts:
            lines.append(
                ", ".join(f"{k}: {v}" for k, v in e.items() if not isinstance(v, dict | list))
            )
        if e.get("candidate"):
            lines.append(f"found: {e['candidate']}")
        queued = e.get("queued_for")
        if isinstance(queued, list) and len(queued) == 2:
            lines.append(
                f"queued for agents #{queued[0]} and #{queued[1]}, which are "
                f"#{self.side_a.agent_id} and #{self.side_b.agent_id} now"
            )
        for label, side in (("A", e.get("a")), ("B", e.get("b"))):
            if isinstance(side, dict) and side.get("source"):
                contacts = ", ".join([*side.get("emails", []), *side.get("phones", [])])
                lines.append(
                    f"{label} record: {side.get('name') or '-'} ({side.get('source')}, "
                    f"team {side.get('team_id') or '-'}){': ' + contacts if contacts else ''}"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "confidence": self.confidence,
            "weight": self.weight,
            "evidence": self.evidence,
            "created_at": self.created_at,
            "a": self.side_a.to_dict(),
            "b": self.side_b.to_dict(),
        }


_LIST = """
WITH RECURSIVE items AS (
    SELECT q.id, q.rule, q.confidence, q.weight, q.evidence, q.created_at, q.agent_id,
           q.candidate_agent_id
    FROM public.merge_review_queue q
    WHERE q.status = 'open'
    ORDER BY q.confidence DESC, q.weight DESC NULLS LAST, q.id
    LIMIT %s
),
-- each side followed to the end of its merged_into chain: one hop after a merge, more after
-- agents retired by hand into retired ones (until a merge or a decision moves the item)
chain (start, agent_id, next, depth) AS (
    SELECT a.agent_id, a.agent_id, a.merged_into, 0
    FROM public.new_unified_agents a
    WHERE a.agent_id IN (SELECT agent_id FROM items UNION SELECT candidate_agent_id FROM items)
    UNION ALL
    SELECT c.start, a.agent_id, a.merged_into, c.depth + 1
    FROM chain c JOIN public.new_unified_agents a ON a.agent_id = c.next
    WHERE c.depth < 100
),
now AS (SELECT DISTINCT ON (start) start, agent_id FROM chain ORDER BY start, depth DESC)
SELECT q.id, q.rule, q.confidence, q.weight, q.evidence, q.created_at::text AS created_at,
       q.agent_id AS a_id, na.agent_id AS a_survivor,
       sa.full_name AS a_name, sa.source_team_id AS a_team, sa.emails AS a_emails,
       sa.phone_numbers AS a_phones, sa.source_count AS a_sources,
       q.candidate_agent_id AS b_id, nb.agent_id AS b_survivor,
       sb.full_name AS b_name, sb.source_team_id AS b_team, sb.emails AS b_emails,
       sb.phone_numbers AS b_phones, sb.source_count AS b_sources
FROM items q
JOIN now na ON na.start = q.agent_id
JOIN now nb ON nb.start = q.candidate_agent_id
JOIN public.new_unified_agents sa ON sa.agent_id = na.agent_id
JOIN public.new_unified_agents sb ON sb.agent_id = nb.agent_id
ORDER BY q.confidence DESC, q.weight DESC NULLS LAST, q.id
"""


def _side(row: dict[str, Any], prefix: str) -> Side:
    return Side(
        agent_id=row[f"{prefix}_id"],
        survivor=row[f"{prefix}_survivor"],
        full_name=row[f"{prefix}_name"],
        team_id=row[f"{prefix}_team"],
        emails=list(row[f"{prefix}_emails"] or []),
        phones=list(row[f"{prefix}_phones"] or []),
        sources=int(row[f"{prefix}_sources"] or 0),
    )


def open_items(conn: psycopg.Connection[Any], limit: int) -> tuple[list[ReviewItem], int]:
    """Up to ``limit`` open items (strongest first) and how many are open, on ``conn``."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_LIST, (limit,)).fetchall()
        total_row = cur.execute(
            "SELECT count(*) AS n FROM public.merge_review_queue WHERE status = 'open'"
        ).fetchone()
    items = [
        ReviewItem(
            id=r["id"],
            rule=r["rule"],
            confidence=r["confidence"],
            evidence=dict(r["evidence"] or {}),
            created_at=r["created_at"],
            side_a=_side(r, "a"),
            side_b=_side(r, "b"),
            weight=float(r["weight"]) if r["weight"] is not None else None,
        )
        for r in rows
    ]
    return items, int(total_row["n"]) if total_row else 0


def default_reviewer() -> str:
    """Who decides: $SYNCPIPE_REVIEWER, else the login name."""
    name = os.environ.get("SYNCPIPE_REVIEWER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ReviewItemChangedError(JobFailedError):
    """The item's agents changed since it was queued: nothing was decided; the same decision
    again, once a person has looked at the item's new state, is taken."""


class ReviewService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _require(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            "SELECT to_regprocedure('public.review_decide(bigint,text,text)')"
        ).fetchone()
        if row is None or row[0] is None:
            raise NotDeployedError(
                f"{self.db.target} has no review queue; run `syncpipe deploy` first."
            )

    def open_items(self, limit: int = 50) -> tuple[list[ReviewItem], int]:
        """Up to ``limit`` open items (strongest first) and how many are open in all."""
        with self.db.connection() as conn:
            self._require(conn)
            return open_items(conn, limit)

    def decide(self, review_id: int, decision: str, decided_by: str) -> dict[str, Any]:
        """Accept or reject one item; JobFailedError naming the item when that cannot be."""
        if decision not in ("accept", "reject"):
            raise ConfigError(f"A decision is accept or reject, not {decision!r}.")
        with self.db.connection() as conn:
            self._require(conn)
            # A merge or another decision is waited for, as an agent or the item edited in a
            # transaction left open is: up to SYNCPIPE_LOCK_TIMEOUT (review_decide() itself
            # only tries the lock, for its RPC callers; here it holds already).
            timeout = self.db.settings.lock_timeout
            xact_lock(conn, LockKind.MERGE, timeout=timeout, what=MERGE_OR_DECISION)
            conn.execute(
                "SELECT set_config('lock_timeout', %s, true)", (lock_timeout_setting(timeout),)
            )
            try:
                row = conn.execute(
                    "SELECT public.review_decide(%s, %s, %s)", (review_id, decision, decided_by)
                ).fetchone()
            except psycopg.errors.LockNotAvailable as exc:
                conn.rollback()
                reason = exc.diag.message_primary or "a merge is running; try again"
                # (the lock timeout ends a wait where the statement checks for interrupts;
                # a server that speaks another language says "lock timeout" in its own words)
                if exc.diag.source_function == "ProcessInterrupts" or "lock timeout" in reason:
                    holders = describe_row_holders(
                        conn, "new_unified_agents", "merge_review_queue", locking=True
                    )
                    reason = (
                        f"another session holds its agents or the item locked (an edit in a "
                        f"transaction still open: {holders}); gave up after "
                        f"{timeout:g} s (setting SYNCPIPE_LOCK_TIMEOUT)"
                    )
                raise LockTimeoutError(
                    f"Cannot {decision} review item {review_id} now: {reason}."
                ) from None
            except (psycopg.errors.NoDataFound, psycopg.errors.InvalidParameterValue) as exc:
                conn.rollback()
                message = exc.diag.message_primary or str(exc)
                raise JobFailedError(
                    f"Cannot {decision} review item {review_id}: {message}."
                ) from None
        outcome = dict(row[0]) if row and row[0] else {}
        if outcome.get("settled"):
            one_agent = outcome.get("agent_id") == outcome.get("candidate_agent_id")
            same_as = outcome.get("same_as")
            if same_as is not None or one_agent != (decision == "accept"):
                # (the item was taken off the queue: what it asked is answered otherwise, or
                # asked by another item)
                then = f"; decide on review item {same_as}" if same_as is not None else ""
                a, b = outcome.get("agent_id"), outcome.get("candidate_agent_id")
                agents = f"agent {a}" if one_agent else f"agents {a} and {b}"
                raise JobFailedError(
                    f"Cannot {decision} review item {review_id}: {outcome.get('reason')} "
                    f"({agents}, since it was queued); it was taken off the queue, nothing was "
                    f"decided{then}."
                )
        if outcome.get("refused"):
            changes = "; ".join(outcome.get("changes") or [])
            raise ReviewItemChangedError(
                f"Cannot {decision} review item {review_id}: it changed since it was queued "
                f"({changes}); it now compares agents {outcome.get('agent_id')} and "
                f"{outcome.get('candidate_agent_id')}: look at it again (syncpipe review) "
                f"and {decision} it again if it still holds."
            )
        return outcome
