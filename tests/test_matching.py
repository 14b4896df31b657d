"""Matching beyond the ladder (issue 15): contact evidence judged per pair of holders, match
weights, candidates beyond the team, review items a person can decide from. Real PostgreSQL,
the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.agents import Sources, agent_of, member_agent
from tests.helpers import Invoke, fetch


def load_and_merge(invoke: Invoke, dsn: str, src: Sources, folder: Path, *args: str) -> dict:
    src.write(folder)
    invoke(["load", str(folder)], dsn=dsn)
    return invoke(["merge", "--json", *args], dsn=dsn).json()


def test_shared_key_is_evidence_between_holders_whose_names_fit(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An office line held by three people: the two records of Ryan Cole merge on it, Helen
    Ward stays apart; "J. Smith" fits John and Jane Smith and chains neither; one-word names a
    typo apart share a mailbox."""
    src = Sources()
    office = "(555) 201-0100"
    ryan1 = src.agent("Ryan Cole", phones=[office], team="team-2")
    ryan2 = src.agent("Ryan Cole", phones=[office], team="team-3")
    helen = src.agent("Helen Ward", phones=[office], team="team-4")
    desk = "desk@smithrealty.com"
    john = src.agent("John Smith", emails=[desk])
    jane = src.agent("Jane Smith", emails=[desk])
    page = src.page(
        "team-9",
        [{"name": "J. Smith", "email": desk}, {"name": "Brrown", "email": "brown@mail.com"}],
    )
    brown = src.agent("Brown", emails=["brown@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert agent_of(deployed_db, "new_agents", ryan1) == agent_of(deployed_db, "new_agents", ryan2)
    assert agent_of(deployed_db, "new_agents", helen) != agent_of(deployed_db, "new_agents", ryan1)
    smiths = {
        agent_of(deployed_db, "new_agents", john),
        agent_of(deployed_db, "new_agents", jane),
        member_agent(deployed_db, page, 1),
    }
    assert len(smiths) == 3
    assert member_agent(deployed_db, page, 2) == agent_of(deployed_db, "new_agents", brown)


def test_one_email_held_by_500_names_chains_nobody(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    for i in range(500):
        src.agent(f"Person{i:03d} Name{i:03d}", emails=["info@bigbroker.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    rows = fetch(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE merged_into IS NULL")
    assert rows[0][0] == 500
