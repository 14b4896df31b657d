"""syncpipe merge and review on a real PostgreSQL: the hard cases, incremental runs, review
decisions, dry runs, and every way a merge can be refused or fail."""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.agents import Sources, agent_of, assert_contact_keys_in_step, live_agents, member_agent
from tests.helpers import Invoke, fetch, one, require_language


def load_and_merge(invoke: Invoke, dsn: str, src: Sources, folder: Path, *args: str) -> dict:
    src.write(folder)
    invoke(["load", str(folder)], dsn=dsn)
    return invoke(["merge", "--json", *args], dsn=dsn).json()


def work_tables(dsn: str) -> list[str]:
    """Tables left in the merge's work schema: a run drops all of its own before it ends."""
    return [
        str(r[0])
        for r in fetch(
            dsn, "SELECT relname FROM pg_class WHERE relnamespace = 'syncpipe_work'::regnamespace"
        )
    ]


# -- the hard cases of DESIGN.md -------------------------------------------------------------
def test_shared_office_line_does_not_merge_two_people(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    office = "(555) 201-0100"
    a = src.agent("Maria Lopez", phones=[office], emails=["maria.lopez@mail.com"])
    b = src.agent("Tom Becker", phones=[office], emails=["tbecker@mail.com"])
    page = src.page("team-1", [{"name": "Helen Ward", "phone": office}])
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert result["merge"]["shared_contacts"] >= 1
    agents = {agent_of(deployed_db, "new_agents", a), agent_of(deployed_db, "new_agents", b)}
    agents.add(member_agent(deployed_db, page, 1))
    assert len(agents) == 3


def test_names_in_other_scripts_are_names_on_an_office_line(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Names in Chinese, Cyrillic, Greek and Hebrew are names: five people of one team on its
    office line stay five agents, each named. Each one's feed record joins them by e-mail, or
    by the same name in the team, in capitals or without the Hebrew vowel points."""
    src = Sources()
    office = "(617) 555-0100"
    names = ["李小龙", "Иван Петров", "Сергей Смирнов", "Ελένη Παπαδοπούλου", "דָּוִד כֹּהֵן"]
    page = src.page(
        "dragon-realty",
        [{"name": n, "email": f"p{i}@dragon.com", "phone": office} for i, n in enumerate(names)],
    )
    li = src.agent("李小龙", emails=["p0@dragon.com"], phones=[office], team="dragon-realty")
    ivan = src.agent("ИВАН ПЕТРОВ", phones=[office], team="dragon-realty")
    david = src.agent("דוד כהן", phones=[office], team="dragon-realty")
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    members = [member_agent(deployed_db, page, i + 1) for i in range(len(names))]
    assert len(set(members)) == len(names)
    assert agent_of(deployed_db, "new_agents", li) == members[0]
    assert agent_of(deployed_db, "new_agents", ivan) == members[1]
    assert agent_of(deployed_db, "new_agents", david) == members[4]
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == len(names)
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE full_name = ''") == 0


def test_chinese_japanese_and_korean_names_on_an_office_line(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Names written as one word each, a letter apart, or with a one-letter given name: each
    is a person of their own on the office line; the same name with a space in it is not."""
    src = Sources()
    office = "(617) 555-0100"
    names = ["李小龙", "李小明", "王小明", "佐藤 健", "佐藤 翼", "김민준"]
    page = src.page(
        "dragon-realty",
        [{"name": n, "email": f"p{i}@dragon.com", "phone": office} for i, n in enumerate(names)],
    )
    yamada = src.agent("山田太郎", emails=["yamada@dragon.com"], phones=[office])
    page2 = src.page("team-1", [{"name": "山田 太郎", "email": "yamada@dragon.com"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    members = [member_agent(deployed_db, page, i + 1) for i in range(len(names))]
    assert len(set(members)) == len(names)
    assert agent_of(deployed_db, "new_agents", yamada) == member_agent(deployed_db, page2, 1)


def test_names_in_two_scripts_never_switch_the_name_check_off(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """One Cyrillic letter in a Latin name ("Mariа Lopez") leaves an office line an office
    line; "Ivan Petrov" is "Иван Петров" on his e-mail, and holding a key of "Сергей
    Смирнов" too does not chain the two people into one."""
    src = Sources()
    office = "(555) 201-0100"
    maria = src.agent("Mari\u0430 Lopez", phones=[office])
    tom = src.agent("Tom Becker", phones=[office])
    ivan = src.agent("Ivan Petrov", emails=["ivan.petrov@mail.com"], phones=["(555) 201-0177"])
    page = src.page(
        "team-2",
        [
            {"name": "Иван Петров", "email": "ivan.petrov@mail.com"},
            {"name": "Сергей Смирнов", "phone": "(555) 201-0177"},
        ],
    )
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert agent_of(deployed_db, "new_agents", maria) != agent_of(deployed_db, "new_agents", tom)
    assert member_agent(deployed_db, page, 1) != member_agent(deployed_db, page, 2)
    assert agent_of(deployed_db, "new_agents", ivan) == member_agent(deployed_db, page, 1)


def test_personal_email_with_name_variants_still_merges(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """One person's e-mail seen with a nickname, a typo and "Last, First" is evidence."""
    src = Sources()
    a = src.agent("Robert Miller", emails=["rmiller77@mail.com"])
    page = src.page(
        "team-1",
        [
            {"name": "Bob Miller", "email": "RMiller77@mail.com "},
            {"full_name": "Miller, Robert", "emails": ["rmiller77@mail.com"]},
            {"name": "Robret Miller", "email": "rmiller77@mail.com"},
        ],
    )
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    agent = agent_of(deployed_db, "new_agents", a)
    assert {member_agent(deployed_db, page, i) for i in (1, 2, 3)} == {agent}
    assert (
        one(
            deployed_db,
            "SELECT confidence_score FROM new_unified_agents WHERE agent_id = %s",
            (agent,),
        )
        == 100
    )


def test_mover_joins_across_teams_by_email(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("Dana Whitfield", team="team-old", emails=["dana.whitfield@mail.com"])
    page = src.page("team-new", [{"name": "Dana Whitfield", "email": "dana.whitfield@mail.com"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert agent_of(deployed_db, "new_agents", a) == member_agent(deployed_db, page, 1)


def test_namesakes_in_different_teams_stay_apart(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("James Smith", team="team-1", emails=["jsmith1@mail.com"], phones=["2125550101"])
    b = src.agent("James Smith", team="team-2", emails=["jsmith2@mail.com"], phones=["3125550102"])
    page = src.page("team-2", [{"name": "James Smith", "phone": "312-555-0102"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert agent_of(deployed_db, "new_agents", a) != agent_of(deployed_db, "new_agents", b)
    assert member_agent(deployed_db, page, 1) == agent_of(deployed_db, "new_agents", b)
    assert one(deployed_db, "SELECT count(*) FROM merge_review_queue") == 0


def test_a_team_of_namesakes_costs_its_size_not_its_square(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """300 members of one team named alike, each with a phone of their own: each is compared
    with its neighbours in the block, not with all 299 others (44,850 pairs); 200 namesakes
    that nothing tells apart still end as one agent (the buckets chain)."""
    src = Sources()
    src.page("team-big", [{"name": "John Smith", "phone": f"312555{i:04d}"} for i in range(300)])
    src.page("team-big2", [{"name": "Ann Page"} for _ in range(200)])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    items, agents = fetch(
        deployed_db,
        "SELECT count(*), count(DISTINCT a) FROM (SELECT q.agent_id AS a FROM merge_review_queue q "
        "UNION ALL SELECT q.candidate_agent_id FROM merge_review_queue q) x",
    )[0]
    assert agents == 300  # every namesake is in front of a person
    assert items // 2 <= 300 * 12  # at most 24 neighbours each
    assert (
        one(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE full_name = 'Ann Page'")
        == 1
    )


def test_father_and_son_in_one_team_stay_apart(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """ "John Smith" and "John Smith Jr." share the office line and a team: two people."""
    src = Sources()
    office = "4045550100"
    father = src.agent("John Smith", emails=["john.smith@mail.com"], phones=[office])
    son = src.agent("John Smith Jr.", emails=["jsmithjr@mail.com"], phones=[office])
    page = src.page(
        "team-1",
        [
            {"name": "John Smith", "phone": office},
            {"name": "John Smith, Jr.", "email": "jsmithjr@mail.com", "phone": office},
        ],
    )
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    f, s = agent_of(deployed_db, "new_agents", father), agent_of(deployed_db, "new_agents", son)
    assert f != s
    assert member_agent(deployed_db, page, 1) == f
    assert member_agent(deployed_db, page, 2) == s


@pytest.mark.parametrize("vague", ["J. Smith", "Smith", None])
def test_a_vague_name_does_not_chain_two_people_across_two_keys(
    invoke: Invoke, deployed_db: str, tmp_path: Path, vague: str | None
) -> None:
    """A record that shares a phone with John Smith and an e-mail with Jane Smith: each key
    alone fits its two names, but the record's name (an initial, one word, none) fits both
    people; it joins neither automatically, and both links wait in the review queue with the
    reason."""
    src = Sources()
    john = src.agent("John Smith", emails=["john.smith@mail.com"], phones=["2125550101"])
    jane = src.agent("Jane Smith", emails=["smith.home@mail.com"], phones=["2125550199"])
    member = {"email": "smith.home@mail.com", "phone": "212-555-0101"}
    page = src.page("team-1", [member if vague is None else {"name": vague, **member}])
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    agents = {agent_of(deployed_db, "new_agents", k) for k in (john, jane)}
    agents.add(member_agent(deployed_db, page, 1))
    assert len(agents) == 3
    assert result["merge"]["review_items_added"] == 2
    parts = fetch(deployed_db, "SELECT evidence -> 'parts' FROM merge_review_queue")
    assert all("fits two people" in json.dumps(p[0]) for p in parts), parts


def test_a_vague_name_arriving_later_does_not_join_two_known_agents(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The same bridge in a later run, between two agents already in the master table."""
    src = Sources()
    john = src.agent("John Smith", emails=["john.smith@mail.com"], phones=["2125550101"])
    jane = src.agent("Jane Smith", emails=["smith.home@mail.com"], phones=["2125550199"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    later = Sources(_serial=100)
    bridge = later.agent("J Smith", emails=["smith.home@mail.com"], phones=["2125550101"])
    result = load_and_merge(invoke, deployed_db, later, tmp_path / "d2")
    agents = {agent_of(deployed_db, "new_agents", k) for k in (john, jane, bridge)}
    assert len(agents) == 3
    assert result["merge"]["agents_retired"] == 0
    assert result["merge"]["review_items_added"] == 2


def test_a_vague_name_between_two_parts_held_together_otherwise_still_merges(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Aleksander and Alexandra Smith are two given names, but "Alexander Smith" shares a phone
    with each (a typo of both): the two are one without the vague "A. Smith" (an e-mail with
    one, a phone with the other) too, so nothing is cut and the four records are one agent."""
    src = Sources()
    keys = [
        src.agent("Aleksander Smith", emails=["as.one@mail.com"], phones=["2125550101"]),
        src.agent("Alexandra Smith", phones=["2125550102", "2125550103"]),
        src.agent("Alexander Smith", phones=["2125550101", "2125550103"]),
        src.agent("A. Smith", emails=["as.one@mail.com"], phones=["2125550102"]),
    ]
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert len({agent_of(deployed_db, "new_agents", k) for k in keys}) == 1
    assert result["merge"]["review_items_added"] == 0


@pytest.mark.parametrize(
    ("left", "bridges", "right", "together"),
    [
        # two vague records in a row are no better than one
        ("John Smith", ["Smith", "J. Smith"], "Jane Smith", False),
        # family names say "two people" too
        ("John Smith", ["John S."], "John Sanders", False),
        # a nickname of several names fits two people
        ("Christopher Smith", ["Chris Smith"], "Christine Smith", False),
        # one person: a middle name, a double given name, the word order
        ("James Robert Smith", ["Smith"], "Robert Smith", True),
        ("Anne-Marie Smith", ["A. Smith"], "Marie Smith", True),
        ("Smith John", ["Smith"], "John Smith", True),
    ],
)
def test_vague_records_between_two_names(
    invoke: Invoke,
    deployed_db: str,
    tmp_path: Path,
    left: str,
    bridges: list[str],
    right: str,
    together: bool,
) -> None:
    """left - bridge - ... - right, each sharing a phone with the next: the vague records
    join two people only where the two names fit one person."""
    src = Sources()
    chain = [left, *bridges, right]
    last = len(chain) - 1
    # record i shares phone i + 1 with the next one
    keys = [
        src.agent(
            name,
            emails=[f"r{i}@mail.com"],
            phones=[f"21255501{k:02d}" for k in (i, i + 1) if (k > 0 or i > 0) and k <= last],
        )
        for i, name in enumerate(chain)
    ]
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    a, b = (
        agent_of(deployed_db, "new_agents", keys[0]),
        agent_of(deployed_db, "new_agents", keys[-1]),
    )
    assert (a == b) is together


def test_a_long_chain_of_vague_names_between_two_people(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """John Smith, 1,000 records named "Smith" or "J. Smith" each sharing a phone with the
    next, then Jane Smith: the chain counts as one vague record and joins neither. (Labelling
    it one link a round held a lock per round and ran out of lock memory at 800.)"""
    src = Sources()
    names = ["John Smith", *(("Smith", "J. Smith")[i % 2] for i in range(1000)), "Jane Smith"]
    last = len(names) - 1
    keys = [
        src.agent(
            name,
            team=None,
            emails=[f"c{i}@mail.com"],
            phones=[f"2{k:09d}" for k in (i, i + 1) if (k > 0 or i > 0) and k <= last],
        )
        for i, name in enumerate(names)
    ]
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert result["merge"]["review_items_added"] == 2
    john, jane = (agent_of(deployed_db, "new_agents", k) for k in (keys[0], keys[-1]))
    chain = agent_of(deployed_db, "new_agents", keys[1])
    assert len({john, jane, chain}) == 3
    assert agent_of(deployed_db, "new_agents", keys[-2]) == chain


def test_a_vague_name_linked_to_one_person_twice_still_merges(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The same shape with one person on both sides ("Jon" is a typo of "John"): one agent."""
    src = Sources()
    john = src.agent("John Smith", emails=["john.smith@mail.com"], phones=["2125550101"])
    bridge = src.agent("J. Smith", emails=["smith.home@mail.com"], phones=["2125550101"])
    jon = src.agent("Jon Smith", emails=["smith.home@mail.com"], phones=["2125550199"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert len({agent_of(deployed_db, "new_agents", k) for k in (john, bridge, jon)}) == 1


def test_nickname_or_typo_without_shared_contact_goes_to_review(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    rob = src.agent("Robert Brown", emails=["rbrown@mail.com"])
    typo = src.agent("Catherine Zeller", emails=["czeller@mail.com"])
    page = src.page(
        "team-1",
        [
            {"name": "Bob Brown", "email": "bob.brown@work.com"},
            {"name": "Catherine Zeler", "phone": "6175550123"},
        ],
    )
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert agent_of(deployed_db, "new_agents", rob) != member_agent(deployed_db, page, 1)
    assert agent_of(deployed_db, "new_agents", typo) != member_agent(deployed_db, page, 2)
    assert result["merge"]["review_items_added"] == 2
    rows = fetch(
        deployed_db,
        "SELECT rule, confidence, evidence ->> 'a_name', evidence ->> 'b_name', "
        "(evidence ->> 'similarity')::numeric FROM merge_review_queue ORDER BY id",
    )
    assert {(r[0], r[1]) for r in rows} == {("fuzzy_name", 60)}
    assert {frozenset((r[2], r[3])) for r in rows} == {
        frozenset(("robert brown", "bob brown")),
        frozenset(("catherine zeller", "catherine zeler")),
    }
    flagged = one(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE needs_review")
    assert flagged == 4


def test_name_and_team_merges_at_80_and_confidence_is_the_weakest_link(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("Priya Natarajan", emails=["priya@mail.com"])
    page = src.page("team-1", [{"name": "Priya  NATARAJAN", "phone": "7185550199"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    agent = agent_of(deployed_db, "new_agents", a)
    assert member_agent(deployed_db, page, 1) == agent
    row = fetch(
        deployed_db,
        "SELECT confidence_score, needs_review, emails, phone_numbers, source_count "
        "FROM new_unified_agents WHERE agent_id = %s",
        (agent,),
    )[0]
    assert row == (80, False, ["priya@mail.com"], ["+17185550199"], 2)


# -- member pipeline ---------------------------------------------------------------------------
def test_member_pipeline_accepts_every_shape_and_survives_garbage(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    src.page(
        "team-1",
        [
            {"name": "Ann Lee", "email": "ann@mail.com", "phone": "212-555-0101"},
            {
                "full_name": "Bo Chen",
                "emails": ["bo@mail.com", "BO@MAIL.COM"],
                "phones": [2125550102],
            },
            {"name": "Cy Park", "phones": ["+1 (212) 555-0103 ext. 9", "12"]},
            {"name": "", "email": "not-an-email"},
            {},
            None,
            42,
            "Dee Ray",
            ["nested"],
            {"name": "   ", "title": "no contact"},
            {"name": "Ed Fox", "email": None, "phone": {"bad": 1}},
            # the first member again, written differently: stored once, at its first place
            {"name": "Ann Lee", "email": " ANN@mail.com", "phone": "(212) 555-0101"},
        ],
    )
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    pipe = result["pipeline"]
    assert pipe["inserted"] == 4
    assert pipe["duplicates"] == 1
    assert pipe["skipped_not_object"] == 4
    assert pipe["skipped_empty"] == 3
    first = "SELECT member_position FROM unified_company_member WHERE member_name = 'Ann Lee'"
    assert one(deployed_db, first) == 1
    rows = fetch(
        deployed_db,
        "SELECT member_name, email_normalized, phone_normalized, member_raw ? 'name' "
        "OR member_raw ? 'full_name' FROM unified_company_member ORDER BY member_position",
    )
    assert rows == [
        ("Ann Lee", ["ann@mail.com"], ["+12125550101"], True),
        ("Bo Chen", ["bo@mail.com"], ["+12125550102"], True),
        ("Cy Park", [], ["+12125550103"], True),
        ("Ed Fox", [], [], True),
    ]
    again = invoke(["merge", "--json"], dsn=deployed_db).json()
    assert again["pipeline"]["inserted"] == 0
    assert again["merge"]["pending"] == 0


# -- incremental and stable ------------------------------------------------------------------
def test_changed_page_is_read_again_and_its_members_follow(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A page whose members change is exploded again: a member gone loses its row and lineage,
    a new one is matched; an unchanged page and a page whose website alone changed are not
    read again."""
    src = Sources()
    page = src.page(
        "team-1",
        [{"name": "Ruth Gold", "email": "ruth@mail.com"}, {"name": "Tom Reyes"}],
    )
    other = src.page("team-2", [{"name": "Uma Das", "phone": "4155550100"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    tom = member_agent(deployed_db, page, 2)

    src.pages[0]["team_members"] = json.dumps(
        [{"name": "Ruth Gold", "email": "ruth@mail.com"}, {"name": "Vic Ames"}]
    )
    src.pages[1]["website"] = "https://team-2.example.org"
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "d2")
    assert result["pipeline"]["pages"] == 1
    assert result["pipeline"]["removed"] == 1 and result["pipeline"]["inserted"] == 1
    names = fetch(
        deployed_db,
        "SELECT member_name FROM unified_company_member WHERE research_uuid = %s ORDER BY 1",
        (page,),
    )
    assert names == [("Ruth Gold",), ("Vic Ames",)]
    assert member_agent(deployed_db, page, 2) != tom
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM unified_agent_sources s WHERE s.source = 'company_member' "
            "AND NOT EXISTS (SELECT 1 FROM unified_company_member m WHERE m.id::text = s.source_id)",
        )
        == 0
    )
    assert one(deployed_db, "SELECT bool_and(members_synced) FROM bronze.company_info_raw")
    assert member_agent(deployed_db, other, 1)


def test_a_member_whose_email_changed_keeps_its_row_and_its_agent(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A page re-read where a member of the same name now has another e-mail: the member's row
    is updated in place and matched again as a changed record, and keeps its agent, which now
    holds the new e-mail (it was a member gone and a new one come: a new agent, and the old
    one left active without any record)."""
    src = Sources()
    page = src.page(
        "team-1", [{"name": "Ruth Gold", "email": "ruth@mail.com"}, {"name": "Tom Reyes"}]
    )
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    ruth = member_agent(deployed_db, page, 1)
    member_id = one(
        deployed_db,
        "SELECT id FROM unified_company_member WHERE member_name = 'Ruth Gold'",
    )
    src.pages[0]["team_members"] = json.dumps(
        [{"name": "Ruth Gold", "email": "ruth.gold@new.com"}, {"name": "Tom Reyes"}]
    )
    src.write(tmp_path / "d2")
    invoke(["load", str(tmp_path / "d2")], dsn=deployed_db)
    # (as the table says it: it left the changed member out)
    table = invoke(["merge"], dsn=deployed_db).stdout
    for row, count in (
        ("members changed in place (new e-mail or phone)", 1),
        ("members removed from re-read pages", 0),
        ("members new (inserted)", 0),
        ("of which changed since last matched", 1),
    ):
        assert re.search(re.escape(row) + rf"\s*│\s*{count}\s*│", table), (row, table)
    assert (
        one(deployed_db, "SELECT id FROM unified_company_member WHERE member_name = 'Ruth Gold'")
        == member_id
    )
    assert member_agent(deployed_db, page, 1) == ruth
    assert one(
        deployed_db, "SELECT emails FROM new_unified_agents WHERE agent_id = %s", (ruth,)
    ) == ["ruth.gold@new.com"]
    assert not fetch(
        deployed_db,
        "SELECT agent_id FROM new_unified_agents a WHERE merged_into IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM unified_agent_sources s WHERE s.agent_id = a.agent_id)",
    )
    assert_contact_keys_in_step(deployed_db)


def test_second_run_changes_nothing_and_new_records_join_existing_agents(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("Lena Fischer", emails=["lena@mail.com"])
    b = src.agent("Omar Haddad", emails=["omar@mail.com"], phones=["2065550111"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    before = fetch(deployed_db, "SELECT agent_id, updated_at FROM new_unified_agents ORDER BY 1")
    lena, omar = agent_of(deployed_db, "new_agents", a), agent_of(deployed_db, "new_agents", b)

    again = invoke(["merge", "--json"], dsn=deployed_db).json()
    assert again["merge"]["pending"] == 0
    assert (
        fetch(deployed_db, "SELECT agent_id, updated_at FROM new_unified_agents ORDER BY 1")
        == before
    )

    new = Sources(_serial=100)
    page = new.page(
        "team-1",
        [
            {"name": "Lena Fischer", "email": "LENA@mail.com"},
            {"name": "Omar Haddad", "phone": "(206) 555-0111"},
        ],
    )
    load_and_merge(invoke, deployed_db, new, tmp_path / "d2")
    assert member_agent(deployed_db, page, 1) == lena
    assert member_agent(deployed_db, page, 2) == omar
    assert live_agents(deployed_db) == 2
    assert_contact_keys_in_step(deployed_db)


def test_new_evidence_joins_two_agents_and_the_retired_id_stays_resolvable(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("Sam Ortiz", team="team-1", emails=["sam.ortiz@mail.com"])
    b = src.agent("Samuel Ortiz", team="team-2", phones=["3055550142"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    first, second = agent_of(deployed_db, "new_agents", a), agent_of(deployed_db, "new_agents", b)
    assert first != second

    bridge = Sources(_serial=100)
    bridge.page(
        "team-2", [{"name": "Sam Ortiz", "email": "sam.ortiz@mail.com", "phone": "305-555-0142"}]
    )
    result = load_and_merge(invoke, deployed_db, bridge, tmp_path / "d2")
    assert result["merge"]["agents_retired"] == 1
    survivor, retired = min(first, second), max(first, second)
    assert (
        agent_of(deployed_db, "new_agents", a) == agent_of(deployed_db, "new_agents", b) == survivor
    )
    assert (
        one(
            deployed_db,
            "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s",
            (retired,),
        )
        == survivor
    )
    emails, phones = fetch(
        deployed_db,
        "SELECT emails, phone_numbers FROM new_unified_agents WHERE agent_id = %s",
        (survivor,),
    )[0]
    assert emails == ["sam.ortiz@mail.com"] and phones == ["+13055550142"]
    assert_contact_keys_in_step(deployed_db)


def test_an_agent_retired_or_deleted_by_hand_loses_its_contact_keys(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The merge reads known agents by their contact keys and trusts them to be active ones'.
    An agent retired or deleted through the API loses its keys at once (triggers), and a new
    record with its e-mail joins no retired agent."""
    src = Sources()
    sam = src.agent("Sam Ortiz", team="team-1", emails=["sam.ortiz@mail.com"])
    kim = src.agent("Kim Boyd", team="team-2", emails=["kim.boyd@mail.com"])
    dana = src.agent("Dana Lee", team="team-3", phones=["3055550199"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    sam_agent, kim_agent, dana_agent = (
        agent_of(deployed_db, "new_agents", key) for key in (sam, kim, dana)
    )
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute(
            "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s",
            (kim_agent, sam_agent),
        )
        conn.execute("DELETE FROM new_agents WHERE supabase_uuid = %s", (dana,))
        conn.commit()
        # the emptied agent, deleted by its owner (the merge marked it for a refresh)
        conn.execute("RESET ROLE")
        conn.execute("DELETE FROM merge_dirty_agents WHERE agent_id = %s", (dana_agent,))
        conn.execute("DELETE FROM new_unified_agents WHERE agent_id = %s", (dana_agent,))
        conn.commit()
    assert_contact_keys_in_step(deployed_db)
    assert fetch(deployed_db, "SELECT DISTINCT agent_id FROM merge_agent_contacts") == [
        (kim_agent,)
    ]

    again = Sources(_serial=100)
    back = again.agent("Sam Ortiz", team="team-7", emails=["sam.ortiz@mail.com"])
    load_and_merge(invoke, deployed_db, again, tmp_path / "d2")
    joined = agent_of(deployed_db, "new_agents", back)
    assert joined != sam_agent
    assert (
        one(
            deployed_db, "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s", (joined,)
        )
        is None
    )
    assert_contact_keys_in_step(deployed_db)


def test_agent_record_changed_after_merge_is_matched_again(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("Nina Petrova", emails=["nina@mail.com"])
    b = src.agent("Nina Petrova", team="team-9", emails=["nina.p@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    assert agent_of(deployed_db, "new_agents", a) != agent_of(deployed_db, "new_agents", b)

    # The second record now carries the first one's e-mail (a corrected feed row).
    src.agents[1]["email_clean"] = '["nina.p@mail.com", "nina@mail.com"]'
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "d2")
    assert result["merge"]["changed_records"] == 1
    assert agent_of(deployed_db, "new_agents", a) == agent_of(deployed_db, "new_agents", b)
    assert_contact_keys_in_step(deployed_db)


def test_record_that_leaves_its_agent_empty_retires_it_into_the_one_it_joins(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A changed record that shares nothing with its old agent any more (its e-mail replaced,
    no name link across teams) joins another agent; the old one, left without records, is
    retired into it: its id stays resolvable, and its open review item is answered."""
    src = Sources()
    a = src.agent("Nina Petrova", emails=["nina@mail.com"])
    b = src.agent("Nina Petrova", team="team-9", emails=["nina.p@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    old_b = agent_of(deployed_db, "new_agents", b)
    assert agent_of(deployed_db, "new_agents", a) != old_b

    src.agents[1]["email_clean"] = '["nina@mail.com"]'
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "d2")
    assert result["merge"]["changed_records"] == 1
    survivor = agent_of(deployed_db, "new_agents", a)
    assert agent_of(deployed_db, "new_agents", b) == survivor
    assert fetch(
        deployed_db,
        "SELECT merged_into, needs_review FROM new_unified_agents WHERE agent_id = %s",
        (old_b,),
    ) == [(survivor, False)]
    empty = (
        "SELECT count(*) FROM new_unified_agents a WHERE merged_into IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM unified_agent_sources s WHERE s.agent_id = a.agent_id)"
    )
    assert one(deployed_db, empty) == 0
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM merge_review_queue WHERE status = 'open' "
            "AND %s IN (agent_id, candidate_agent_id)",
            (old_b,),
        )
        == 0
    )
    assert_contact_keys_in_step(deployed_db)


def _edit(src: Sources, index: int, name: str, team: str, emails: list[str]) -> None:
    src.agents[index].update(full_name=name, team_id=team, email_clean=json.dumps(emails))


def test_an_emptied_agent_is_reused_by_its_records_new_component_not_retired(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An agent whose two records both change: one joins another agent, the other starts a
    person of its own. The emptied agent's id goes on with the second (it is not retired into
    the first one's agent while a component of its records has no agent)."""
    src = Sources()
    a1 = src.agent("Anna Berg", team="team-1", emails=["anna@mail.com"])
    a2 = src.agent("Anna Berg", team="team-2", emails=["anna@mail.com"])
    b = src.agent("Anna Berg", team="team-8", emails=["anna.y@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    x = agent_of(deployed_db, "new_agents", a1)
    assert agent_of(deployed_db, "new_agents", a2) == x != agent_of(deployed_db, "new_agents", b)

    _edit(src, 0, "Anna Berg", "team-8", ["anna.y@mail.com"])
    _edit(src, 1, "Zed Quinn", "team-5", ["zed@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d2")
    assert agent_of(deployed_db, "new_agents", a1) == agent_of(deployed_db, "new_agents", b)
    assert agent_of(deployed_db, "new_agents", a2) == x
    assert fetch(
        deployed_db,
        "SELECT full_name, merged_into FROM new_unified_agents WHERE agent_id = %s",
        (x,),
    ) == [("Zed Quinn", None)]
    assert_contact_keys_in_step(deployed_db)


def test_an_agent_joined_by_new_evidence_is_not_also_reused_for_its_changed_record(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A new record links to an agent through a contact its only record has since dropped, so
    that agent is retired into another; its changed record then needs an agent of its own,
    not the retired one (no lineage may point at a retired agent)."""
    src = Sources()
    w = src.agent("Lou Fox", team="team-5", emails=["w5@mail.com"])
    r = src.agent("Lou Fox", team="team-4", emails=["lou@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    old_r = agent_of(deployed_db, "new_agents", r)
    assert old_r != agent_of(deployed_db, "new_agents", w)

    _edit(src, 1, "Ray Park", "team-6", ["ray@mail.com"])
    src.agent("Lou Fox", team="team-5", emails=["lou@mail.com", "w5@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d2")
    on_retired = (
        "SELECT count(*) FROM unified_agent_sources s JOIN new_unified_agents a USING (agent_id) "
        "WHERE a.merged_into IS NOT NULL"
    )
    assert one(deployed_db, on_retired) == 0
    ray = agent_of(deployed_db, "new_agents", r)
    assert ray not in (old_r, agent_of(deployed_db, "new_agents", w))
    assert fetch(
        deployed_db,
        "SELECT full_name, merged_into FROM new_unified_agents WHERE agent_id = %s",
        (ray,),
    ) == [("Ray Park", None)]
    assert one(
        deployed_db, "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s", (old_r,)
    ) == agent_of(deployed_db, "new_agents", w)
    assert_contact_keys_in_step(deployed_db)


def test_an_emptied_agent_is_not_retired_into_an_agent_a_person_told_apart_from_it(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("William Carter", emails=["wcarter@mail.com"])
    b = src.agent("Bill Carter", emails=["billc@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    (item,) = invoke(["review", "--json"], dsn=deployed_db).json()["items"]
    invoke(["review", "reject", str(item["id"])], dsn=deployed_db)
    old_b = agent_of(deployed_db, "new_agents", b)

    src.agents[1]["email_clean"] = '["wcarter@mail.com"]'
    load_and_merge(invoke, deployed_db, src, tmp_path / "d2")
    assert agent_of(deployed_db, "new_agents", b) == agent_of(deployed_db, "new_agents", a)
    assert (
        one(deployed_db, "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s", (old_b,))
        is None
    )
    assert_contact_keys_in_step(deployed_db)


def test_records_without_email_phone_or_team(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    a = src.agent("Ivo Marek", team=None)
    b = src.agent("Ivo Marek", team=None)
    page = src.page("team-1", [{"name": "Ivo Marek"}, {"email": "nameless@mail.com"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    # No team and no contact: nothing to say they are one person.
    ids = {
        agent_of(deployed_db, "new_agents", a),
        agent_of(deployed_db, "new_agents", b),
        member_agent(deployed_db, page, 1),
    }
    assert len(ids) == 3
    nameless = member_agent(deployed_db, page, 2)
    assert (
        one(
            deployed_db, "SELECT full_name FROM new_unified_agents WHERE agent_id = %s", (nameless,)
        )
        is None
    )


# -- review -------------------------------------------------------------------------------
def _two_for_review(invoke: Invoke, dsn: str, folder: Path) -> tuple[int, str, str]:
    src = Sources()
    a = src.agent("William Carter", emails=["wcarter@mail.com"])
    b = src.agent("Bill Carter", emails=["billc@mail.com"])
    load_and_merge(invoke, dsn, src, folder)
    items = invoke(["review", "--json"], dsn=dsn).json()
    assert items["open"] == 1
    item = items["items"][0]
    assert {item["a"]["full_name"], item["b"]["full_name"]} == {"William Carter", "Bill Carter"}
    # a known nickname, same family name and team, but their own e-mails differ: a person
    # decides, with the weight and its parts in words
    assert item["rule"] == "nickname_team" and item["evidence"]["weight"] > 0
    assert any("e-mails" in part for part in item["evidence"]["parts"])
    return int(item["id"]), a, b


def test_accepted_review_pair_merges_the_two_agents(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    review_id, a, b = _two_for_review(invoke, deployed_db, tmp_path / "data")
    out = invoke(["review", "accept", str(review_id), "--by", "kim"], dsn=deployed_db).stdout
    assert f"Review item {review_id} accepted" in out
    assert agent_of(deployed_db, "new_agents", a) == agent_of(deployed_db, "new_agents", b)
    assert fetch(deployed_db, "SELECT status, decided_by FROM merge_review_queue") == [
        ("accepted", "kim")
    ]
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE needs_review") == 0
    # (the retired agent counts no record: they went to the survivor; it kept its old count)
    assert fetch(
        deployed_db, "SELECT source_count FROM new_unified_agents ORDER BY merged_into NULLS FIRST"
    ) == [(2,), (0,)]
    assert_contact_keys_in_step(deployed_db)
    assert work_tables(deployed_db) == []
    # Deciding again, or on an id that does not exist: a clear error, exit 1.
    again = invoke(["review", "reject", str(review_id)], dsn=deployed_db, code=1)
    assert (
        f"Cannot reject review item {review_id}: review item {review_id} was already accepted"
        in again.stderr
    )
    missing = invoke(["review", "accept", "999999"], dsn=deployed_db, code=1)
    assert "review item 999999 does not exist" in missing.stderr


def test_a_golden_name_never_keeps_characters_that_turn_text_around(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Two records of one person, one name written with a right-to-left override: that
    spelling was the longest, and the agent's name, shown reversed in every interface. (The
    joiners Persian names need stay.)"""
    src = Sources()
    src.agent("\u202eevil\u202c Jones", emails=["ej@mail.com"])
    src.agent("evil Jones", emails=["ej@mail.com"])
    src.agent("\u0645\u06cc\u200c\u0631\u0627 Karimi", team="team-2", emails=["mk@mail.com"])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    names = {row[0] for row in fetch(deployed_db, "SELECT full_name FROM new_unified_agents")}
    assert names == {"evil Jones", "\u0645\u06cc\u200c\u0631\u0627 Karimi"}


def test_a_very_long_name_is_cut_in_tables_and_whole_in_json(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A 5,000-character name filled hundreds of lines of every table that showed it."""
    _two_for_review(invoke, deployed_db, tmp_path / "data")
    fetch(
        deployed_db,
        "UPDATE new_unified_agents SET full_name = 'William ' || repeat('x', 5000) "
        "WHERE full_name = 'William Carter'",
    )
    table = invoke(["review"], dsn=deployed_db).stdout
    assert table.count("x") < 200 and "characters)" in table  # (all 5,000 before)
    items = invoke(["review", "--json"], dsn=deployed_db).json()["items"]
    assert "William " + "x" * 5000 in {i[k]["full_name"] for i in items for k in ("a", "b")}


def test_a_record_of_an_accepted_pair_renamed_into_another_person_leaves_alone(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The accept holds a record's place while its name is the one the person saw. A record
    that became another person (name, e-mail, team) leaves for that person's agent, and never
    takes the accepted agent with it (a first version of the rule kept it at confidence 100,
    and retired the accepted agent into the other person's)."""
    review_id, a, b = _two_for_review(invoke, deployed_db, tmp_path / "data")
    more = Sources(_serial=200)
    judith = more.agent("Judith Sanchez", team="team-9", emails=["judith.s@mail.com"])
    more.write(tmp_path / "more")
    invoke(["load", str(tmp_path / "more")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    invoke(["review", "accept", str(review_id)], dsn=deployed_db)
    carter, judiths = (
        agent_of(deployed_db, "new_agents", a),
        agent_of(deployed_db, "new_agents", judith),
    )
    fetch(
        deployed_db,
        "UPDATE new_agents SET full_name = 'Judith Sanchez', team_id = 'team-9', "
        "email_clean = '[\"judith.s@mail.com\"]' WHERE supabase_uuid = %s",
        (b,),
    )
    invoke(["merge"], dsn=deployed_db)
    assert agent_of(deployed_db, "new_agents", b) == judiths
    assert agent_of(deployed_db, "new_agents", a) == carter != judiths
    assert (
        one(
            deployed_db, "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s", (carter,)
        )
        is None
    )


@pytest.mark.parametrize("side", ["retired", "surviving"])
def test_an_accepted_pair_stays_one_agent_when_a_record_changes(
    invoke: Invoke, deployed_db: str, tmp_path: Path, side: str
) -> None:
    """A record of an accepted pair edited later (its e-mail, say) was matched again from
    scratch: its evidence alone is for review, so it left for a new agent and the question the
    person had answered was queued again. A decision is kept by every later run."""
    review_id, a, b = _two_for_review(invoke, deployed_db, tmp_path / "data")
    invoke(["review", "accept", str(review_id)], dsn=deployed_db)
    survivor = agent_of(deployed_db, "new_agents", a)
    assert agent_of(deployed_db, "new_agents", b) == survivor
    rules = dict(
        fetch(
            deployed_db,
            "SELECT source_id, match_rule FROM unified_agent_sources WHERE source_id IN (%s, %s)",
            (a, b),
        )
    )
    assert sorted(rules.values()) == ["review", "single"]  # (the retired agent's record)
    key = next(k for k, rule in rules.items() if (rule == "review") == (side == "retired"))
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE new_agents SET email_clean = '[\"carter.new@mail.com\"]', "
            "phone_digits = '[\"2065550177\"]' WHERE supabase_uuid = %s",
            (key,),
        )
    result = invoke(["merge", "--json"], dsn=deployed_db).json()["merge"]
    assert result["pending"] == 1 and result["agents_created"] == 0
    assert agent_of(deployed_db, "new_agents", a) == agent_of(deployed_db, "new_agents", b)
    assert agent_of(deployed_db, "new_agents", key) == survivor
    assert one(deployed_db, "SELECT count(*) FROM merge_review_queue WHERE status = 'open'") == 0
    emails = one(
        deployed_db, "SELECT emails FROM new_unified_agents WHERE agent_id = %s", (survivor,)
    )
    assert "carter.new@mail.com" in emails
    assert (
        one(
            deployed_db,
            "SELECT match_rule FROM unified_agent_sources WHERE source_id = %s",
            (key,),
        )
        == "review"
    )
    assert_contact_keys_in_step(deployed_db)


@pytest.mark.parametrize("language", ["C", "de_DE.UTF-8"])
def test_a_decision_on_agents_held_by_an_open_edit_names_it(
    invoke: Invoke, deployed_db: str, tmp_path: Path, language: str
) -> None:
    """An agent of the pair held by another session's open transaction: the decision gives up
    after the lock timeout, saying who holds what and naming the setting (exit 3); a server
    speaking German too (its words for the lock timeout were not recognized)."""
    require_language(deployed_db, language)
    review_id, a, _ = _two_for_review(invoke, deployed_db, tmp_path / "data")
    database = one(deployed_db, "SELECT current_database()")
    fetch(deployed_db, f"ALTER DATABASE {database} SET lc_messages = '{language}'")
    with psycopg.connect(deployed_db) as other:
        pid = other.info.backend_pid
        other.execute(
            "SELECT 1 FROM new_unified_agents WHERE agent_id = %s FOR UPDATE",
            (agent_of(deployed_db, "new_agents", a),),
        )
        res = invoke(
            ["review", "accept", str(review_id)],
            dsn=deployed_db,
            code=3,
            env={"SYNCPIPE_LOCK_TIMEOUT": "0.5"},
        )
    assert "another session holds its agents or the item locked" in res.stderr
    assert f"server pid {pid}," in res.stderr  # (the session, by name)
    assert "SYNCPIPE_LOCK_TIMEOUT" in res.stderr
    assert one(deployed_db, "SELECT status FROM merge_review_queue") == "open"


def test_rejected_review_pair_never_comes_back(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    review_id, a, b = _two_for_review(invoke, deployed_db, tmp_path / "data")
    # (an id given twice is decided once: no "already rejected" error for the second)
    out = invoke(["review", "reject", str(review_id), str(review_id)], dsn=deployed_db).stdout
    assert out.count(f"Review item {review_id} rejected") == 1
    assert agent_of(deployed_db, "new_agents", a) != agent_of(deployed_db, "new_agents", b)
    # A new record of the same team makes both agents pending again via new evidence.
    more = Sources(_serial=100)
    more.agent("Will Carter", emails=["will.carter@mail.com"])
    # (Bill's e-mail: joins Bill, and its name is William's nickname: a pair of the two)
    more.agent("Billy Carter", emails=["billc@mail.com"])
    more.write(tmp_path / "d2")
    invoke(["load", str(tmp_path / "d2")], dsn=deployed_db)
    # The dry run shows that pair as kept apart, not as review, as the real run does.
    dry = invoke(["merge", "--dry-run", "--sample", "50", "--json"], dsn=deployed_db).json()
    outcomes = {(p["outcome"], frozenset((p["a_name"], p["b_name"]))) for p in dry["pairs_sample"]}
    assert ("kept apart", frozenset(("William Carter", "Billy Carter"))) in outcomes, outcomes
    assert ("review", frozenset(("William Carter", "Billy Carter"))) not in outcomes
    # (and counts it so: the pairs for review were counted with the kept-apart ones)
    kept = dry["merge"]["review_pairs_kept_apart"]
    assert kept >= 1 and dry["merge"]["review_pairs"] >= kept
    table = invoke(["merge", "--dry-run"], dsn=deployed_db).stdout
    for row, count in (
        (
            "record pairs for review (one item per pair of agents)",
            dry["merge"]["review_pairs"] - kept,
        ),
        ("record pairs kept apart (a person told their agents apart)", kept),
    ):
        assert re.search(re.escape(row) + rf"\s*│\s*{count}\s*│", table), (row, table)
    invoke(["merge", "--json"], dsn=deployed_db)
    pairs = fetch(
        deployed_db,
        "SELECT least(agent_id, candidate_agent_id), greatest(agent_id, candidate_agent_id) "
        "FROM merge_review_queue WHERE status = 'open'",
    )
    rejected = tuple(
        sorted((agent_of(deployed_db, "new_agents", a), agent_of(deployed_db, "new_agents", b)))
    )
    assert rejected not in pairs
    assert one(
        deployed_db,
        "SELECT decided_by IS NOT NULL FROM merge_review_queue WHERE id = %s",
        (review_id,),
    )


def test_rejected_agents_stay_apart_when_a_later_record_links_them(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A record holding one agent's e-mail and the other's, after a person said they are two
    people: it joins one of them (the nearest, the lower id on a tie), never both."""
    review_id, a, b = _two_for_review(invoke, deployed_db, tmp_path / "data")
    invoke(["review", "reject", str(review_id)], dsn=deployed_db)
    first, second = agent_of(deployed_db, "new_agents", a), agent_of(deployed_db, "new_agents", b)
    bridge = Sources(_serial=100)
    c = bridge.agent("W. Carter", emails=["wcarter@mail.com", "billc@mail.com"])
    result = load_and_merge(invoke, deployed_db, bridge, tmp_path / "d2")
    assert result["merge"]["agents_retired"] == 0
    assert agent_of(deployed_db, "new_agents", a) == first
    assert agent_of(deployed_db, "new_agents", b) == second
    assert agent_of(deployed_db, "new_agents", c) == min(first, second)
    assert (
        one(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE merged_into IS NOT NULL")
        == 0
    )
    # and the pair is not proposed again
    pairs = fetch(
        deployed_db,
        "SELECT least(agent_id, candidate_agent_id), greatest(agent_id, candidate_agent_id) "
        "FROM merge_review_queue WHERE status = 'open'",
    )
    assert (min(first, second), max(first, second)) not in pairs
    assert_contact_keys_in_step(deployed_db)


def _three_namesakes(invoke: Invoke, dsn: str, folder: Path) -> tuple[list[str], list[int]]:
    """Three "Anna Lee" of one team, each with an e-mail and a phone of their own: three
    agents and three review items; their feed keys and agents."""
    src = Sources()
    keys = [
        src.agent("Anna Lee", team="t1", emails=[f"anna{i}@x.com"], phones=[f"617555000{i}"])
        for i in range(3)
    ]
    load_and_merge(invoke, dsn, src, folder)
    return keys, [agent_of(dsn, "new_agents", k) for k in keys]


def test_a_rejected_pair_does_not_come_back_through_a_third_agent(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Three namesakes, three items; a person rejects A-B and accepts A-C: the item B-C would
    now join B to A, the rejected pair, so it is answered, not left open to undo the rejection."""
    keys, (a, b, c) = _three_namesakes(invoke, deployed_db, tmp_path / "data")
    items = {
        frozenset(pair): item_id
        for item_id, *pair in fetch(
            deployed_db, "SELECT id, agent_id, candidate_agent_id FROM merge_review_queue"
        )
    }
    assert set(items) == {frozenset((a, b)), frozenset((a, c)), frozenset((b, c))}
    invoke(["review", "reject", str(items[frozenset((a, b))])], dsn=deployed_db)
    invoke(["review", "accept", str(items[frozenset((a, c))])], dsn=deployed_db)
    assert fetch(deployed_db, "SELECT id FROM merge_review_queue WHERE status = 'open'") == []
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE needs_review") == 0
    assert fetch(
        deployed_db,
        "SELECT decision FROM merge_decisions WHERE %s IN (agent_low, agent_high) "
        "AND %s IN (agent_low, agent_high)",
        (a, b),
    ) == [("rejected",)]
    # and a later merge that joins a third agent into one of them does not revive it either
    assert agent_of(deployed_db, "new_agents", keys[0]) != agent_of(
        deployed_db, "new_agents", keys[1]
    )


def test_a_rejected_pair_does_not_come_back_when_a_merge_joins_a_third_agent(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The same through a merge: new records join C into A; the item B-C must not become an
    open item B-A."""
    keys, (a, b, _) = _three_namesakes(invoke, deployed_db, tmp_path / "data")
    (ab,) = fetch(
        deployed_db,
        "SELECT id FROM merge_review_queue WHERE least(agent_id, candidate_agent_id) = %s "
        "AND greatest(agent_id, candidate_agent_id) = %s",
        (min(a, b), max(a, b)),
    )[0]
    invoke(["review", "reject", str(ab)], dsn=deployed_db)
    more = Sources(_serial=100)
    more.agent("Anna Lee", team="t1", emails=["anna0@x.com", "anna2@x.com"])
    load_and_merge(invoke, deployed_db, more, tmp_path / "d2")
    assert agent_of(deployed_db, "new_agents", keys[2]) == agent_of(
        deployed_db, "new_agents", keys[0]
    )
    open_pairs = fetch(
        deployed_db,
        "SELECT least(agent_id, candidate_agent_id), greatest(agent_id, candidate_agent_id) "
        "FROM merge_review_queue WHERE status = 'open'",
    )
    assert (min(a, b), max(a, b)) not in open_pairs
    assert agent_of(deployed_db, "new_agents", keys[1]) == b != a


def test_an_item_re_pointed_to_a_survivor_says_whom_it_was_queued_for(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An open item William Carter - Bill Carter (team t1); a later record joins that Bill
    Carter with another one (team t2): the item now names the survivor, and says which agents
    it was queued for (its evidence describes their records)."""
    src = Sources()
    other = src.agent("Bill Carter", team="t2", emails=["bc2@mail.com"])
    william = src.agent("William Carter", team="t1", emails=["wcarter@mail.com"])
    bill = src.agent("Bill Carter", team="t1", emails=["bc1@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    queued = {agent_of(deployed_db, "new_agents", k) for k in (william, bill)}
    assert invoke(["review", "--json"], dsn=deployed_db).json()["open"] == 1
    more = Sources(_serial=100)
    more.agent("Bill Carter", team="t1", emails=["bc1@mail.com", "bc2@mail.com"])
    load_and_merge(invoke, deployed_db, more, tmp_path / "d2")
    survivor = agent_of(deployed_db, "new_agents", bill)
    assert survivor == agent_of(deployed_db, "new_agents", other)
    items = invoke(["review", "--json"], dsn=deployed_db).json()["items"]
    (item,) = [i for i in items if set(i["evidence"].get("queued_for", [])) == queued]
    assert {item["a"]["agent_id"], item["b"]["agent_id"]} == {
        survivor,
        agent_of(deployed_db, "new_agents", william),
    }
    shown = invoke(["review"], dsn=deployed_db, env={"COLUMNS": "400"}).stdout
    assert "queued for agents" in shown


def test_an_item_queued_by_the_run_that_retires_its_agent_names_the_survivor(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """One run joins two agents and queues an item against the one it retires: the item names
    the survivor, so that a person can decide it."""
    src = Sources()
    x = src.agent("Aiden Garcia", team="team-1", emails=["aiden.one@mail.com"])
    y = src.agent("Aiden Garcia", team="team-9", emails=["aiden.two@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    first, second = agent_of(deployed_db, "new_agents", x), agent_of(deployed_db, "new_agents", y)
    assert first != second
    more = Sources(_serial=100)
    more.agent("Aiden Garcia", team="team-1", emails=["aiden.one@mail.com", "aiden.two@mail.com"])
    p = more.agent("Aiden Garcia", team="team-9", emails=["agarcia.office@mail.com"])
    result = load_and_merge(invoke, deployed_db, more, tmp_path / "d2")
    assert result["merge"]["agents_retired"] == 1
    retired = one(
        deployed_db, "SELECT agent_id FROM new_unified_agents WHERE merged_into IS NOT NULL"
    )
    items = fetch(
        deployed_db,
        "SELECT id, agent_id, candidate_agent_id FROM merge_review_queue WHERE status = 'open'",
    )
    assert items and all(retired not in (a, b) for _, a, b in items)
    newcomer = agent_of(deployed_db, "new_agents", p)
    assert any({a, b} == {newcomer, min(first, second)} for _, a, b in items)
    for item_id, _, _ in items:  # every item can be decided as it is listed
        invoke(["review", "reject", str(item_id)], dsn=deployed_db)


# -- dry run ---------------------------------------------------------------------------------
def _table_counts(dsn: str) -> dict[str, int]:
    tables = [
        "new_unified_agents",
        "unified_agent_sources",
        "unified_company_member",
        "merge_review_queue",
        "unified_merge_logs",
    ]
    return {t: one(dsn, f"SELECT count(*) FROM public.{t}") for t in tables}


def test_dry_run_shows_what_a_run_would_do_and_writes_nothing(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    src.agent("Rosa Diaz", emails=["rosa@mail.com", "a.rosa@mail.com"])
    src.agent("Jake Peralta", emails=["jake@mail.com"])
    src.page(
        "team-1",
        [
            {"name": "Rosa Diaz", "emails": ["rosa@mail.com", "a.rosa@mail.com"]},
            {"name": "Jacob Peraltta", "phone": "7185550100"},  # nickname and typo: review
        ],
    )
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    before = _table_counts(deployed_db)
    synced = one(deployed_db, "SELECT count(*) FROM bronze.company_info_raw WHERE members_synced")

    dry = invoke(["merge", "--dry-run", "--json", "--output", "pairs.csv"], dsn=deployed_db).json()
    assert _table_counts(deployed_db) == before
    assert (
        one(deployed_db, "SELECT count(*) FROM bronze.company_info_raw WHERE members_synced")
        == synced
    )
    assert dry["dry_run"] is True
    assert dry["merge"]["links"] == {"email": 1, "name_team": 1}
    assert dry["merge"]["agents_new"] == 3
    assert dry["merge"]["review_pairs"] == 1
    outcomes = {(p["outcome"], p["rule"]) for p in dry["pairs_sample"]}
    assert outcomes == {("merge", "email"), ("merge", "name_team"), ("review", "fuzzy_name")}
    with open("pairs.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert dry["pairs_exported"] == len(rows) == 3
    # two shared e-mails: the evidence is the first of them, the same in every run
    email = next(r for r in rows if r["rule"] == "email")
    assert (email["evidence"], email["a_name"], email["b_name"]) == (
        "a.rosa@mail.com",
        "Rosa Diaz",
        "Rosa Diaz",
    )

    text = invoke(["merge", "--dry-run"], dsn=deployed_db).stdout
    assert "Merge (dry run: nothing written)" in text and "would be matched" in text

    assert work_tables(deployed_db) == []

    real = invoke(["merge", "--json", "--output", "real-pairs.csv"], dsn=deployed_db).json()
    assert real["merge"]["agents_created"] == dry["merge"]["agents_new"]
    assert real["merge"]["links"] == dry["merge"]["links"]
    # (a real run shows a sample only when asked: reading every pair costs seconds at scale)
    assert real["pairs_exported"] == 3 and real["pairs_sample"] == []
    assert work_tables(deployed_db) == []

    # The counts a run reports are a dry run's too, under the same names (a dry run's were
    # null), with or without a sample.
    more = Sources(_serial=50)
    more.agent("Rosa Diaz", emails=["rosa@mail.com"])  # joins her agent
    more.agent("Amy Santiago", emails=["amy@mail.com"])
    more.write(tmp_path / "more")
    invoke(["load", str(tmp_path / "more")], dsn=deployed_db)
    counted = ("records_matched", "agents_created", "agents_joined", "agents_retired")
    for sample in ("0", "5"):
        dry = invoke(["merge", "--dry-run", "--json", "--sample", sample], dsn=deployed_db).json()
        assert all(dry["merge"][key] is not None for key in counted), dry["merge"]
    real = invoke(["merge", "--json"], dsn=deployed_db).json()
    assert {k: dry["merge"][k] for k in counted} == {k: real["merge"][k] for k in counted}
    assert (real["merge"]["agents_joined"], real["merge"]["agents_created"]) == (1, 1)


def test_dry_run_lists_the_name_links_held_for_review(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Same name, same team, their own e-mails differ: the pair a run queues for review is in
    the dry run's pairs too, and both count it under their own words."""
    src = Sources()
    src.agent("Zebulon Quarry", team="team-a", emails=["zq.one@x.com"])
    src.agent("Zebulon Quarry", team="team-a", emails=["zq.two@x.com"])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    dry = invoke(["merge", "--dry-run", "--json", "--output", "pairs.csv"], dsn=deployed_db).json()
    with open("pairs.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["outcome"], r["rule"], r["evidence"]) for r in rows] == [
        ("review", "name_team", "zebulon quarry")
    ]
    assert dry["merge"]["review_pairs"] == 1
    table = invoke(["merge", "--dry-run"], dsn=deployed_db, env={"COLUMNS": "200"}).stdout
    assert "record pairs for review" in table
    real = invoke(["merge"], dsn=deployed_db, env={"COLUMNS": "200"}).stdout
    assert "review items queued" in real
    assert fetch(deployed_db, "SELECT rule FROM merge_review_queue") == [("name_team",)]


def test_service_role_runs_the_merge_by_rpc(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Supabase users call the functions by RPC as service_role: they run as their owner, so
    service_role needs no right on the work schema, and each call drops its tables."""
    src = Sources()
    src.agent("Amy Santiago", emails=["amy@mail.com"])
    src.page("team-9", [{"name": "Amy Santiago", "email": "AMY@mail.com"}])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")

        def call(function: str, options: dict) -> dict:
            query = sql.SQL("SELECT public.{}(%s)").format(sql.Identifier(function))
            row = conn.execute(query, (Jsonb(options),)).fetchone()
            assert row is not None
            return dict(row[0])

        dry = call("run_unified_merge_batch", {"dry_run": True})
        assert dry["status"] == "planned" and dry["pending"] == 1
        assert call("run_unified_member_pipeline", {})["inserted"] == 1
        conn.commit()
        merged = call("run_unified_merge_batch", {})
        assert merged["status"] == "success" and merged["agents_created"] == 1
        conn.commit()
    assert work_tables(deployed_db) == []
    for role in ("anon", "authenticated", "service_role"):
        with psycopg.connect(deployed_db) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE syncpipe_work.t (x int)")


# -- refusals and failures -------------------------------------------------------------------
def test_merge_before_deploy_and_before_load(
    invoke: Invoke, fresh_db: str, deployed_db: str
) -> None:
    undeployed = invoke(["merge"], dsn=fresh_db, code=2)
    assert "run `syncpipe deploy` first" in undeployed.stderr
    assert "Traceback" not in undeployed.stderr
    empty = invoke(["merge"], dsn=deployed_db, code=1)
    assert "Nothing to merge" in empty.stderr and "syncpipe load" in empty.stderr
    review = invoke(["review"], dsn=fresh_db, code=2)
    assert "run `syncpipe deploy` first" in review.stderr


def test_two_merges_never_run_at_once(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    src = Sources()
    src.agent("Ada King", emails=["ada@mail.com"])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    with psycopg.connect(deployed_db, application_name="other-merge") as other:
        other.execute("SELECT pg_advisory_xact_lock(%s, 2)", (0x53594E43,))  # a merge running
        result = invoke(["merge"], dsn=deployed_db, code=3, env={"SYNCPIPE_LOCK_TIMEOUT": "0.5"})
        other.rollback()
    assert "merge" in result.stderr and "other-merge" in result.stderr
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 0


def test_custom_pipeline_steps_run_after_the_merge(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE step_calls (counts jsonb);"
            "CREATE FUNCTION public.record_step(p jsonb) RETURNS jsonb LANGUAGE sql AS "
            "$$ INSERT INTO step_calls VALUES (p) RETURNING jsonb_build_object('ok', true) $$"
        )
    src = Sources()
    src.agent("Eve Stone", emails=["eve@mail.com"])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    out = invoke(
        ["merge", "--json"],
        dsn=deployed_db,
        env={"SYNCPIPE_PIPELINE_STEPS": '["public.record_step"]'},
    ).json()
    assert out["custom_steps"][0]["function"] == "public.record_step"
    assert one(deployed_db, "SELECT (counts ->> 'agents_created')::int FROM step_calls") == 1
    bad = invoke(
        ["merge"],
        dsn=deployed_db,
        code=2,
        env={"SYNCPIPE_PIPELINE_STEPS": '["public.no_such_step"]'},
    )
    assert "SYNCPIPE_PIPELINE_STEPS" in bad.stderr and "public.no_such_step" in bad.stderr


def test_database_going_away_mid_merge_keeps_the_previous_state(
    deployed_db: str, tmp_path: Path, invoke: Invoke
) -> None:
    """The session is killed during the merge: exit 3, nothing written, log says failed, and
    a rerun succeeds."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.slow_step() RETURNS void LANGUAGE sql AS "
            "$$ SELECT pg_sleep(60) $$"
        )
    src = Sources()
    src.agent("Kai Holm", emails=["kai@mail.com"])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    env = {
        **os.environ,
        "SYNCPIPE_DATABASE_URL": deployed_db,
        "SYNCPIPE_PIPELINE_STEPS": '["public.slow_step"]',
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "merge"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    pid = None
    while pid is None and time.monotonic() < deadline:
        rows = fetch(
            deployed_db,
            # (this database's step call only: other tests run steps of that name too)
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%%\"slow_step\"()%%' "
            "AND pid <> pg_backend_pid() AND state = 'active' AND datname = current_database()",
        )
        pid = rows[0][0] if rows else None
        time.sleep(0.05)
    assert pid is not None, "the merge never reached its custom step"
    fetch(deployed_db, "SELECT pg_terminate_backend(%s)", (pid,))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "was lost during the merge" in err and "Traceback" not in err
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 0
    assert fetch(deployed_db, "SELECT run_kind, status FROM unified_merge_logs ORDER BY id") == [
        ("member_pipeline", "failed"),
        ("merge", "failed"),
    ]
    assert work_tables(deployed_db) == []
    rerun = invoke(["merge", "--json"], dsn=deployed_db).json()
    assert rerun["merge"]["agents_created"] == 1


@pytest.mark.parametrize("function", ["merge_label_components", "merge_small_components"])
def test_label_components_find_every_component(deployed_db: str, function: str) -> None:
    """Both labellings give each node the smallest node of its component, on shapes that take
    many rounds (a long chain numbered against the grain; 3,000 records linked one by one in
    random order), stars, pairs and a random tangle, as a union-find computes them."""
    rng = random.Random(5)
    edges = [(1000 - i, 1000 - i - 1) for i in range(80)]  # a chain: labels travel 80 hops
    chain = rng.sample(range(10_000, 13_000), 3_000)
    edges += list(itertools.pairwise(chain))
    edges += [(2000, j) for j in range(2001, 2040)]  # a star
    edges += [(3000 + 2 * k, 3001 + 2 * k) for k in range(60)]  # pairs
    edges += [(rng.randrange(4000, 4400), rng.randrange(4000, 4400)) for _ in range(350)]
    edges = [(a, b) for a, b in edges if a != b]
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    expected = {node: find(node) for node in parent}

    with psycopg.connect(deployed_db) as conn:
        conn.execute("CREATE UNLOGGED TABLE syncpipe_work.sp_cc_edges (a bigint, b bigint)")
        with conn.cursor().copy("COPY syncpipe_work.sp_cc_edges (a, b) FROM STDIN") as copy:
            for a, b in edges:
                copy.write_row((a, b))
                copy.write_row((b, a))
        if function == "merge_label_components":
            conn.execute("SELECT syncpipe_internal.merge_label_components()")
        else:
            conn.execute("SELECT syncpipe_internal.merge_small_components('sp_cc_edges', 'sp_cc')")
        got = dict(conn.execute("SELECT node, label FROM syncpipe_work.sp_cc").fetchall())
        conn.rollback()
    assert got == expected
