"""Source rows emptied or edited outside syncpipe (by hand, through the API) reach the next
merge as a delete or a change does: a TRUNCATE takes the records' lineage with it and
refreshes their agents, and a member edited in what the merge matches it by is matched again.
Real PostgreSQL, the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.agents import Sources, agent_of, assert_contact_keys_in_step, member_agent
from tests.helpers import Invoke, fetch


def _sources() -> tuple[Sources, str, str]:
    src = Sources()
    ann = src.agent("Ann Lee", team="t1", emails=["ann.lee@mail.com"])
    src.agent("Bob Ray", team="t1", phones=["3055550101"])
    src.agent("Cy Fox", team="t2", emails=["cy.fox@mail.com"])
    page = src.page(
        "t1",
        [
            {"name": "Ann Lee", "email": "ann.lee@mail.com"},
            {"name": "Dee Moss", "email": "dee.moss@mail.com"},
        ],
    )
    return src, ann, page


def _agents(dsn: str) -> list[tuple[Any, ...]]:
    """Each active agent as the merge leaves it, by its id (both databases number alike)."""
    return fetch(
        dsn,
        """
        SELECT a.agent_id, a.full_name, a.emails, a.phone_numbers, a.source_count,
               (SELECT array_agg(s.source ORDER BY s.source) FROM unified_agent_sources s
                WHERE s.agent_id = a.agent_id)
        FROM new_unified_agents a WHERE a.merged_into IS NULL ORDER BY a.agent_id
        """,
    )


def test_a_truncated_source_table_is_forgotten_as_a_deleted_one_is(
    invoke: Invoke, deployed_db: str, twin_db: str, tmp_path: Path
) -> None:
    """TRUNCATE new_agents (a common way to reload a feed) used to leave every feed record's
    lineage, and the agents their e-mails and phones, for ever; `verify` passed and the report
    counted the gone records. Now the next merge leaves what a DELETE of every row leaves."""
    src, _, _ = _sources()
    src.write(tmp_path / "d")
    for dsn in (deployed_db, twin_db):
        invoke(["load", str(tmp_path / "d")], dsn=dsn)
        invoke(["merge"], dsn=dsn)
    assert _agents(deployed_db) == _agents(twin_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute("TRUNCATE new_agents")
    with psycopg.connect(twin_db, autocommit=True) as conn:
        conn.execute("DELETE FROM new_agents")
    assert not fetch(deployed_db, "SELECT 1 FROM unified_agent_sources WHERE source = 'new_agents'")
    for dsn in (deployed_db, twin_db):
        invoke(["merge"], dsn=dsn)
    truncated = _agents(deployed_db)
    assert truncated == _agents(twin_db)
    # (the members' agents keep the members' contacts only; the feed's alone have none)
    assert ["ann.lee@mail.com"] in [row[2] for row in truncated]
    assert not [row for row in truncated if "cy.fox@mail.com" in row[2]]
    assert_contact_keys_in_step(deployed_db)
    invoke(["verify"], dsn=deployed_db)

    # (a team page truncated takes its members with it, by cascade, and their lineage too)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("TRUNCATE bronze.company_info_raw CASCADE")
    invoke(["merge"], dsn=deployed_db)
    assert not fetch(deployed_db, "SELECT 1 FROM unified_agent_sources")
    assert not fetch(deployed_db, "SELECT 1 FROM merge_agent_contacts")


def test_a_member_edited_by_hand_is_matched_again(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A member's e-mails edited through the API used to be ignored by every plain merge (the
    merge found members by their processed flag or a missing lineage only): its agent kept
    the old e-mail, and a feed record with the new one stayed apart from it."""
    src, ann, page = _sources()
    src.write(tmp_path / "d")
    invoke(["load", str(tmp_path / "d")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    dee = member_agent(deployed_db, page, 2)
    assert dee != agent_of(deployed_db, "new_agents", ann)

    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute(
            "UPDATE unified_company_member SET email_normalized = '{dee.m@mail.com}' "
            "WHERE member_name = 'Dee Moss'"
        )
    more = Sources(_serial=100)
    feed_dee = more.agent("Dee Moss", team="t9", emails=["dee.m@mail.com"])
    more.write(tmp_path / "more")
    invoke(["load", str(tmp_path / "more")], dsn=deployed_db)
    result = invoke(["merge", "--json"], dsn=deployed_db).json()["merge"]
    assert result["pending"] == 2  # the edited member and the new feed row
    assert member_agent(deployed_db, page, 2) == agent_of(deployed_db, "new_agents", feed_dee)
    emails = fetch(
        deployed_db,
        "SELECT emails FROM new_unified_agents WHERE agent_id = %s",
        (member_agent(deployed_db, page, 2),),
    )[0][0]
    assert emails == ["dee.m@mail.com"]
    assert_contact_keys_in_step(deployed_db)
    # (the merge's own flag, and an edit of anything else, match nobody again)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("UPDATE unified_company_member SET member_raw = member_raw || '{\"x\": 1}'")
    assert invoke(["merge", "--json"], dsn=deployed_db).json()["merge"]["pending"] == 0


def test_a_member_renamed_by_hand_is_matched_by_its_new_name(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A member renamed through the API kept its old name's normalized forms, and the merge
    matched it by them: renamed "Judith Sanchez" in Judith's team, it stayed apart from her
    feed record. (A feed row renamed so joins her.)"""
    src = Sources()
    judith = src.agent("Judith Sanchez", team="t5", emails=["judith@mail.com"])
    page = src.page("t1", [{"name": "Gregory Obrien", "email": "greg@mail.com"}])
    src.write(tmp_path / "d")
    invoke(["load", str(tmp_path / "d")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    assert member_agent(deployed_db, page, 1) != agent_of(deployed_db, "new_agents", judith)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute(
            "UPDATE unified_company_member SET member_name = 'Judith Sanchez', team_id = 't5', "
            "email_normalized = '{}' WHERE member_name = 'Gregory Obrien'"
        )
    result = invoke(["merge", "--json"], dsn=deployed_db).json()["merge"]
    assert result["links"] == {"name_team": 1}
    assert member_agent(deployed_db, page, 1) == agent_of(deployed_db, "new_agents", judith)
    assert fetch(
        deployed_db,
        "SELECT name_norm FROM unified_agent_sources WHERE source = 'company_member'",
    ) == [("judith sanchez",)]


def test_members_truncated_are_made_again_from_their_pages(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Members come from the team pages. TRUNCATE unified_company_member left the pages marked
    read: no merge made the members again (only --rescan did), and their agents lost them."""
    src, ann, page = _sources()
    src.write(tmp_path / "d")
    invoke(["load", str(tmp_path / "d")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    dee = member_agent(deployed_db, page, 2)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute("TRUNCATE unified_company_member")
    result = invoke(["merge", "--json"], dsn=deployed_db).json()
    assert result["pipeline"]["pages"] == 1
    assert member_agent(deployed_db, page, 1) == agent_of(deployed_db, "new_agents", ann)
    assert member_agent(deployed_db, page, 2) == dee  # (by its e-mail, still the agent's)
    assert_contact_keys_in_step(deployed_db)
