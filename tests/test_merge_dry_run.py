"""`merge --dry-run` helps decide: per rule, borderline pairs first then a seeded random pick,
each side in full; and what the plan does to agents already in the master table."""

from __future__ import annotations

from pathlib import Path

from tests.agents import Sources
from tests.helpers import Invoke, one


def _first_run(invoke: Invoke, dsn: str, folder: Path) -> Sources:
    src = Sources()
    src.agent("Ann Lee", team="team-1", emails=["ann@x.com"])
    src.agent("Carl Webb", team="team-2", emails=["carl@x.com"])
    src.agent("Carl Webb", team="team-3", phones=["5550001111"])
    src.write(folder / "first")
    invoke(["load", str(folder / "first")], dsn=dsn)
    invoke(["merge"], dsn=dsn)
    return src


def _second_batch(folder: Path) -> None:
    src = Sources()
    src._serial = 100  # other ids than the first batch
    src.agent("Ann Lee", team="team-1", emails=["ann@x.com"], phones=["5550002222"])  # joins
    # one person, in two existing agents: this record links both (one is retired)
    src.agent("Carl Webb", team="team-9", emails=["carl@x.com"], phones=["5550001111"])
    for _ in range(3):  # one email held by three records: the weakest email evidence
        src.agent("Dan Park", team="team-4", emails=["dan@x.com"])
    src.agent("Eve Moss", team="team-6", emails=["eve@x.com"])
    src.agent("Eve Moss", team="team-7", emails=["eve@x.com"])
    src.agent("Olaf Brandt", team="team-5", emails=["olaf1@x.com"])
    src.agent("Olaf Brand", team="team-5", emails=["olaf2@x.com"])
    src.agent("Greta Holmstrom", team="team-5", emails=["greta1@x.com"])
    src.agent("Greta Holm", team="team-5", emails=["greta2@x.com"])
    src.write(folder / "second")


def test_dry_run_sample_and_existing_agents(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Borderline first, full sides, seeded; existing agents joined and retired, named."""
    _first_run(invoke, deployed_db, tmp_path)
    _second_batch(tmp_path)
    invoke(["load", str(tmp_path / "second")], dsn=deployed_db)
    agents_before = one(deployed_db, "SELECT count(*) FROM new_unified_agents")

    data = invoke(["merge", "--dry-run", "--sample", "1", "--json"], dsn=deployed_db).json()
    pairs = data["pairs_sample"]
    groups = {(p["outcome"], p["rule"]) for p in pairs}
    assert len(pairs) == len(groups)  # --sample 1: one per outcome and rule
    email = next(p for p in pairs if p["outcome"] == "merge" and p["rule"] == "email")
    assert email["why"] == "borderline" and email["evidence"] == "dan@x.com"  # 3 share it
    fuzzy = next(p for p in pairs if p["rule"] == "fuzzy_name")
    assert fuzzy["outcome"] == "review" and fuzzy["why"] == "borderline"
    assert {fuzzy["a_name"], fuzzy["b_name"]} == {"Olaf Brandt", "Olaf Brand"}  # the closer
    for p in pairs:
        for side in ("a", "b"):
            assert p[f"{side}_name"] and p[f"{side}_team_id"]
            assert isinstance(p[f"{side}_emails"], list) and isinstance(p[f"{side}_phones"], list)
            assert "…" not in p[f"{side}_id"]
            if p[f"{side}_kind"] == "new_agents":
                assert len(p[f"{side}_id"]) == 36  # a full uuid
    assert email["a_emails"] == ["dan@x.com"] and email["b_emails"] == ["dan@x.com"]

    existing = data["existing_agents"]
    assert existing["joined"] >= 1 and existing["retired"] == 1
    assert {j["name"] for j in existing["joined_sample"]} >= {"Ann Lee"}
    (retired,) = existing["retired_sample"]
    assert retired["name"] == "Carl Webb" and retired["into_name"] == "Carl Webb"
    assert retired["into"] < retired["agent_id"]  # the lower id survives

    # seeded: the same seed gives the same sample; and a dry run writes nothing
    again = invoke(["merge", "--dry-run", "--sample", "1", "--json"], dsn=deployed_db).json()
    assert again["pairs_sample"] == pairs
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == agents_before

    table = invoke(["merge", "--dry-run"], dsn=deployed_db, env={"COLUMNS": "250"}).stdout
    assert "borderline" in table and "would be retired" in table
    assert "retired: agent" in table and "Carl Webb" in table
    counts = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in table.splitlines()
        if line.count("│") == 3
    }
    assert counts["agents retired (merged into another)"] == "1"
