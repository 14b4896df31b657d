"""Build small source files of agents for merge tests: new_agents rows and team pages."""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import fetch

AGENT_COLUMNS = [
    "supabase_uuid",
    "full_name",
    "email_clean",
    "phone_digits",
    "team_id",
    "social_links",
]
PAGE_COLUMNS = ["research_uuid", "team_id", "website", "team_members"]


@dataclass
class Sources:
    """Feed agents and team pages, written as the two CSV files the loader reads."""

    agents: list[dict[str, Any]] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)
    _serial: int = 0

    def _uuid(self) -> str:
        self._serial += 1
        return str(uuid.UUID(int=self._serial, version=4))

    def agent(
        self,
        name: str,
        *,
        team: str | None = "team-1",
        emails: list[str] | None = None,
        phones: list[str] | None = None,
        key: str | None = None,
    ) -> str:
        """Add a feed agent; returns its supabase_uuid."""
        key = key or self._uuid()
        self.agents.append(
            {
                "supabase_uuid": key,
                "full_name": name,
                "email_clean": json.dumps(emails or []),
                "phone_digits": json.dumps(phones or []),
                "team_id": team or "",
                "social_links": "",
            }
        )
        return key

    def page(self, team: str, members: list[Any], *, key: str | None = None) -> str:
        """Add a team page with raw ``team_members`` (any JSON); returns its research_uuid."""
        key = key or self._uuid()
        self.pages.append(
            {
                "research_uuid": key,
                "team_id": team,
                "website": f"https://{team}.example.com",
                "team_members": json.dumps(members),
            }
        )
        return key

    def write(self, folder: Path, suffix: str = "") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, columns, rows in (
            (f"new_agents{suffix}.csv", AGENT_COLUMNS, self.agents),
            (f"raw_company_info{suffix}.csv", PAGE_COLUMNS, self.pages),
        ):
            with (folder / name).open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, columns)
                writer.writeheader()
                writer.writerows(rows)
        return folder


def agent_of(dsn: str, source: str, source_id: str) -> int:
    """The current agent of a source record (following merged_into)."""
    rows = fetch(
        dsn,
        "SELECT coalesce(a.merged_into, a.agent_id) FROM public.unified_agent_sources s "
        "JOIN public.new_unified_agents a ON a.agent_id = s.agent_id "
        "WHERE s.source = %s AND s.source_id = %s",
        (source, source_id),
    )
    assert rows, f"{source} {source_id} has no lineage"
    return int(rows[0][0])


def member_agent(dsn: str, page: str, position: int) -> int:
    """The agent of the member at ``position`` (1-based) of a team page."""
    rows = fetch(
        dsn,
        "SELECT id FROM public.unified_company_member WHERE research_uuid = %s "
        "AND member_position = %s",
        (page, position),
    )
    assert rows, f"no member {position} on page {page}"
    return agent_of(dsn, "company_member", str(rows[0][0]))


def live_agents(dsn: str) -> int:
    return int(
        fetch(dsn, "SELECT count(*) FROM public.new_unified_agents WHERE merged_into IS NULL")[0][0]
    )


def assert_contact_keys_in_step(dsn: str) -> None:
    """The merge's contact-key table lists exactly the active agents' e-mails and phones
    (an element NULL is none)."""
    keys = fetch(dsn, "SELECT kind, value, agent_id FROM merge_agent_contacts ORDER BY 1, 2, 3")
    held = fetch(
        dsn,
        """
        SELECT kind, value COLLATE "C", agent_id FROM (
            SELECT 'e'::"char" AS kind, e AS value, agent_id
            FROM new_unified_agents, unnest(emails) e WHERE merged_into IS NULL AND e IS NOT NULL
            UNION
            SELECT 'p'::"char", p, agent_id
            FROM new_unified_agents, unnest(phone_numbers) p
            WHERE merged_into IS NULL AND p IS NOT NULL
        ) k ORDER BY 1, 2, 3
        """,
    )
    assert keys == held and keys
