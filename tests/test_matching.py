"""Matching beyond the ladder (issue 15): contact evidence judged per pair of holders, match
weights, candidates beyond the team, review items a person can decide from. Real PostgreSQL,
the real CLI."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.agents import Sources, agent_of, assert_contact_keys_in_step, member_agent
from tests.helpers import Invoke, fetch, one, plan_of, plans_of


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


# -- the comparisons, table-driven -------------------------------------------------------------

NAME_PARTS = [
    # (a, b, a_canons, b_canons, relation)
    ("thomas", "thomas", None, None, "same"),
    ("tom", "thomas", ["thomas"], ["thomas"], "nickname"),
    (
        "chris",
        "christopher",
        ["christina", "christine", "christopher"],
        ["christopher"],
        "nickname",
    ),
    ("johnsno", "johnson", None, None, "typo"),
    ("li", "lii", None, None, "typo"),
    ("j", "john", None, None, "initial"),
    ("k", "john", None, None, "different"),
    ("mary", "susan", ["mary"], ["susan"], "different"),
    (None, "smith", None, None, "missing"),
]


@pytest.mark.parametrize(("a", "b", "ac", "bc", "expected"), NAME_PARTS)
def test_name_part_relation(
    deployed_db: str,
    a: str | None,
    b: str,
    ac: list[str] | None,
    bc: list[str] | None,
    expected: str,
) -> None:
    got = fetch(
        deployed_db,
        "SELECT syncpipe_internal.name_part_relation(%s, %s, %s::text[], %s::text[])",
        (a, b, ac, bc),
    )[0][0]
    assert got == expected


COMPATIBLE = [
    # (name a, name b, compatible): through the real normalization of the feed
    ("Robert Miller", "Bob Miller", True),
    ("Robert Miller", "Miller, Robert", True),
    ("Robert Miller", "Robret Miller", True),
    ("Brown", "Brrown", True),
    ("Brrown", "Mike Brown", True),
    ("Li Diaz", "Lii Diaz", True),
    ("J. Smith", "John Smith", True),
    ("John Smith", "Jane Smith", False),
    ("John Davis Jr.", "John Davis Sr.", False),
    ("Helen Ward", "Ryan Cole", False),
    # the words in another order, or a subset, each the same or a typo apart
    ("Romrro Morgan", "Morgan Romero", True),
    ("Robett Jacckson", "Robert Jackson Ochoa", True),
    ("Smith John", "John Smiht", True),
    ("Jane Smith", "Smith John", False),
]

CANONS = """coalesce((SELECT array_agg(canonical) FROM public.name_variants
                       WHERE variant = {0}.first_name), ARRAY[{0}.first_name])"""


def _judge(dsn: str, a: str, b: str, function: str) -> bool:
    """A name judgement on two raw names, normalized as the feed's names are."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE UNLOGGED TABLE syncpipe_work.sp_names_in AS "
            "SELECT * FROM (VALUES (1::bigint, %s::text), (2, %s)) v(uid, raw)",
            (a, b),
        )
        conn.execute("SELECT syncpipe_internal.normalize_person_names()")
        got = conn.execute(
            f"""
            SELECT {function}
            FROM syncpipe_work.sp_person_names x, syncpipe_work.sp_person_names y
            WHERE x.uid = 1 AND y.uid = 2
            """.replace("{x_canons}", CANONS.format("x")).replace("{y_canons}", CANONS.format("y"))
        ).fetchone()
        conn.rollback()
    assert got is not None
    return bool(got[0])


@pytest.mark.parametrize(("a", "b", "expected"), COMPATIBLE)
def test_names_compatible(deployed_db: str, a: str, b: str, expected: bool) -> None:
    """In both orders: the merge judges each unordered pair of names on a key once."""
    for x, y in ((a, b), (b, a)):
        got = _judge(
            deployed_db,
            x,
            y,
            "syncpipe_internal.names_compatible(x.name_key, x.first_name, x.last_name, "
            "x.suffix, {x_canons}, y.name_key, y.first_name, y.last_name, y.suffix, "
            "{y_canons})",
        )
        assert got is expected, f"{x} / {y}"


CONFLICT = [
    # (name a, name b, "two different people"?): a key whose names never conflict is one
    # person's, whatever the typos; one conflict makes it a shared key
    ("Joanne Gracia", "Joanne Gaarcia", False),
    ("Scott Rivrea", "Scott Riivera", False),
    ("Megan Rogers", "Rogers", False),
    ("Romrro Morgan", "Morgan Romero", False),
    ("John Smith", "Jane Smith", True),
    ("Helen Ward", "Ryan Cole", True),
    ("John Davis Jr.", "John Davis", True),
    ("Maria Lopez", "Maria Brennan", True),
    # Cyrillic and Greek are judged in Latin letters, as passports write them; a Cyrillic
    # letter in a Latin name switches nothing off
    ("Иван Петров", "Иван Смирнов", True),
    ("Иван Петров", "Сергей Смирнов", True),
    ("Иван Петров", "Ivan Petrov", False),
    ("Сергей Смирнов", "Sergey Smirnov", False),
    ("Mariа Lopez", "Tom Becker", True),
    # other scripts against Latin letters: compared as they are, so apart (the safe side)
    ("李小龙", "Bruce Lee", True),
    # Chinese, Japanese, Korean: the name whole, by its letters (no typos, no initials)
    ("李小龙", "王小明", True),
    ("李小龙", "李小明", True),
    ("佐藤 健", "佐藤 翼", True),
    ("김민준", "김민지", True),
    ("山田 太郎", "山田太郎", False),
    ("김민수", "김수민", True),
    ("Ђорђе Ђокић", "Đorđe Đokić", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), CONFLICT)
def test_names_conflict(deployed_db: str, a: str, b: str, expected: bool) -> None:
    got = _judge(
        deployed_db,
        a,
        b,
        "syncpipe_internal.names_conflict(x.first_name, x.last_name, x.suffix, {x_canons}, "
        "y.first_name, y.last_name, y.suffix, {y_canons})",
    )
    assert got is expected


WEIGHTS = [
    # (given, given_n, family, family_n, total, team, phones, emails, weight range, a part)
    ("same", 2, "same", 2, 10_000, "same", None, None, (26, 30), "same family name x (2 records)"),
    ("same", 500, "same", 2000, 10_000, "same", None, None, (10, 18), "same team"),
    ("nickname", None, "same", 20, 10_000, "same", None, None, (20, 25), "known nickname"),
    ("same", 50, "same", 50, 10_000, "different", None, None, (10, 14), "different teams"),
    (
        "same",
        50,
        "same",
        50,
        10_000,
        "same",
        "different",
        None,
        (10, 20),
        "different personal phones",
    ),
    ("different", None, "same", 50, 10_000, "same", None, "different", (0, 12), "different given"),
]


@pytest.mark.parametrize(
    ("given", "gn", "family", "fn", "total", "team", "phones", "emails", "bounds", "part"), WEIGHTS
)
def test_pair_weight(
    deployed_db: str,
    given: str,
    gn: int | None,
    family: str,
    fn: int | None,
    total: int,
    team: str,
    phones: str | None,
    emails: str | None,
    bounds: tuple[int, int],
    part: str,
) -> None:
    """A rarer shared name weighs more; each part is named in words with its sign."""
    w = fetch(
        deployed_db,
        "SELECT syncpipe_internal.pair_weight(%s, 'x', %s, %s, 'x', %s, %s, %s, false, %s, %s)",
        (given, gn, family, fn, total, team, phones, emails),
    )[0][0]
    assert bounds[0] <= float(w["weight"]) <= bounds[1]
    assert any(part in p for p in w["parts"]), w["parts"]
    assert abs(sum(float(p.rsplit(": ", 1)[1]) for p in w["parts"]) - float(w["weight"])) < 0.05


# -- review items a person can decide from ----------------------------------------------------


def test_review_item_shows_both_sides_and_the_weight_in_words(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    src.agent("Christopher Johnson", emails=["cj@mail.com"], phones=["6175550101"])
    src.page("team-1", [{"name": "Chris Johnsno", "email": "chris.j@work.com"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    items = invoke(["review", "--json"], dsn=deployed_db).json()["items"]
    assert len(items) == 1
    item = items[0]
    ev = item["evidence"]
    assert item["weight"] == pytest.approx(float(ev["weight"]))
    # each side's record on the side of its own agent
    for side in ("a", "b"):
        assert ev[side]["agent_id"] == item[side]["agent_id"]
    by_name = {ev[s]["name"]: ev[s] for s in ("a", "b")}
    assert by_name["Christopher Johnson"]["emails"] == ["cj@mail.com"]
    assert by_name["Christopher Johnson"]["phones"] == ["+16175550101"]
    assert by_name["Chris Johnsno"]["emails"] == ["chris.j@work.com"]
    assert any("nickname" in p for p in ev["parts"]) and any("typo" in p for p in ev["parts"])
    text = invoke(["review"], dsn=deployed_db).stdout
    assert "weight" in text and "nickname" in text


def test_review_decision_on_an_item_whose_agents_are_one_now_settles_it(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An item left open between two agents a later merge joined: an accept says it was
    settled already and takes it off the queue; nothing else changes."""
    src = Sources()
    src.agent("Christopher Johnson", emails=["cj@mail.com"])
    src.page("team-1", [{"name": "Chris Johnsno", "email": "chris.j@work.com"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    item = invoke(["review", "--json"], dsn=deployed_db).json()["items"][0]
    # a later run joins the two agents (a record carrying both e-mails)
    more = Sources(_serial=100)
    more.agent("Chris Johnson", emails=["cj@mail.com", "chris.j@work.com"], team="team-2")
    load_and_merge(invoke, deployed_db, more, tmp_path / "d2")
    with psycopg.connect(deployed_db) as conn:
        # (an item left behind pointing at a retired agent, as an older version could leave)
        conn.execute(
            "INSERT INTO merge_review_queue (agent_id, candidate_agent_id, rule, confidence) "
            "SELECT %s, %s, 'fuzzy_name', 60 WHERE NOT EXISTS "
            "(SELECT 1 FROM merge_review_queue WHERE id = %s AND status = 'open')",
            (item["a"]["agent_id"], item["b"]["agent_id"], item["id"]),
        )
        review_id = conn.execute("SELECT max(id) FROM merge_review_queue").fetchone()[0]  # type: ignore[index]
    agents = fetch(deployed_db, "SELECT * FROM new_unified_agents ORDER BY agent_id")
    out = invoke(["review", "accept", str(review_id)], dsn=deployed_db)
    assert "settled already: both sides are one agent now" in out.stdout
    assert not fetch(deployed_db, "SELECT 1 FROM merge_review_queue WHERE id = %s", (review_id,))
    assert fetch(deployed_db, "SELECT * FROM new_unified_agents ORDER BY agent_id") == agents


def test_review_decision_on_an_agent_that_gained_records_waits_for_a_second_look(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A later merge matched a record to one side of an open item: the first decision is not
    taken and says what changed; the same decision again, after a look, is."""
    src = Sources()
    src.agent("Christopher Johnson", emails=["cj@mail.com"])
    src.page("team-1", [{"name": "Chris Johnsno", "email": "chris.j@work.com"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    item = invoke(["review", "--json"], dsn=deployed_db).json()["items"][0]
    ids = {item["a"]["agent_id"], item["b"]["agent_id"]}
    # a later run matches one more record to Christopher Johnson's agent (his e-mail)
    more = Sources(_serial=100)
    more.agent("Christopher Johnson", emails=["cj@mail.com"], phones=["(617) 555-0101"])
    load_and_merge(invoke, deployed_db, more, tmp_path / "d2")
    grown = fetch(
        deployed_db,
        "SELECT agent_id FROM unified_agent_sources WHERE agent_id = ANY(%s) "
        "GROUP BY agent_id HAVING count(*) = 2",
        (sorted(ids),),
    )[0][0]
    out = invoke(["review", "accept", str(item["id"])], dsn=deployed_db, code=1)
    assert "changed since it was queued" in out.stderr
    assert f"agent {grown} has 1 record(s) matched to it since" in out.stderr
    assert fetch(
        deployed_db, "SELECT status FROM merge_review_queue WHERE id = %s", (item["id"],)
    ) == [("open",)]
    out = invoke(["review", "accept", str(item["id"])], dsn=deployed_db)
    assert "accepted" in out.stdout
    assert fetch(
        deployed_db,
        "SELECT count(*) FROM new_unified_agents WHERE agent_id = ANY(%s) AND merged_into IS NULL",
        (sorted(ids),),
    ) == [(1,)]


def test_review_decision_on_an_item_whose_agent_was_retired_waits_for_a_second_look(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Accepting one item retires an agent that another open item names: that item now
    compares the survivor, and the first decision on it says so instead of deciding."""
    src = Sources()
    src.agent("Christopher Johnson", emails=["cj@mail.com"])
    src.page(
        "team-1",
        [
            {"name": "Chris Johnsno", "email": "chris.j@work.com"},
            {"name": "Christopher Jonson", "email": "c.jonson@else.com"},
        ],
    )
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    item = invoke(["review", "--json"], dsn=deployed_db).json()["items"][0]
    pair = {item["a"]["agent_id"], item["b"]["agent_id"]}
    retired = max(pair)
    with psycopg.connect(deployed_db) as conn:
        # (a second open item naming the agent the first decision will retire, and the third
        # agent: as a merge queues one for a pair it doubts)
        other = conn.execute(
            "SELECT agent_id FROM new_unified_agents WHERE NOT agent_id = ANY(%s)", (sorted(pair),)
        ).fetchone()[0]  # type: ignore[index]
        second = conn.execute(
            "INSERT INTO merge_review_queue (agent_id, candidate_agent_id, rule, confidence) "
            "VALUES (%s, %s, 'fuzzy_name', 60) RETURNING id",
            (retired, other),
        ).fetchone()[0]  # type: ignore[index]
    invoke(["review", "accept", str(item["id"])], dsn=deployed_db)
    out = invoke(["review", "reject", str(second)], dsn=deployed_db, code=1)
    assert f"agent {retired} was merged into agent {min(pair)}" in out.stderr
    out = invoke(["review", "reject", str(second)], dsn=deployed_db)
    assert "rejected" in out.stdout


# -- bad input ---------------------------------------------------------------------------------


def test_bad_names_and_a_big_team_neither_crash_nor_chain(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    src = Sources()
    # (an empty name is rejected by the loader with its row, see test_load)
    odd = ["J.", "J. K.", "Smith", "🏠🏠", "😀 Smith", "A" * 200, "Ann " + "B" * 196]
    for name in odd:
        src.agent(name, team="odd-team")
    members = [{"name": f"Agent{i % 50} Member{i}"} for i in range(5000)]
    members += [{"name": "Smith", "title": "Broker"}, {"name": "Smith", "title": "Agent"}]
    src.page("huge-team", members)
    result = load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    # nothing lost: every feed row and member has its lineage row
    assert (
        result["merge"]["records_matched"]
        == fetch(
            deployed_db,
            "SELECT (SELECT count(*) FROM new_agents) + (SELECT count(*) FROM unified_company_member)",
        )[0][0]
    )
    assert fetch(deployed_db, "SELECT count(*) FROM new_agents")[0][0] == len(odd)
    # the 5,000 members are 5,000 people (distinct surnames), the queue stays bounded
    queued = fetch(deployed_db, "SELECT count(*) FROM merge_review_queue")[0][0]
    assert queued <= 3 * 5000
    # a common one-word name alone merges nobody automatically
    smiths = fetch(
        deployed_db,
        "SELECT count(DISTINCT coalesce(a.merged_into, a.agent_id)) FROM unified_agent_sources s "
        "JOIN new_unified_agents a ON a.agent_id = s.agent_id WHERE s.full_name = 'Smith'",
    )[0][0]
    assert smiths >= 2  # the feed's Smith (odd-team) apart from the members


def test_a_name_word_longer_than_levenshtein_takes_fails_nothing(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """levenshtein() refuses words of more than 255 letters, and a B-tree an index row of more
    than 2,704 bytes; hostile names of that kind on a shared e-mail, a team block and a page
    used to fail the whole merge. Names are cut at 200 letters a part, compared by their first
    255: the typo merges, the different given name stays apart."""
    src = Sources()
    rnd = random.Random(7)  # (CJK letters at random: 3,000 bytes that do not compress)
    huge = "".join(chr(rnd.randrange(0x4E00, 0x9FFF)) for _ in range(1000))
    src.agent(f"{huge} Smith", team="t1", emails=["huge@mail.com"])
    src.agent("John Smith", team="t1")
    src.page("team-1", [{"name": f"Ann {huge}", "email": "ann@mail.com"}])
    word = "Z" + "a" * 299
    a = src.agent(f"{word} Smith", emails=["same@mail.com"])
    b = src.agent(f"{word[:-1]}b Smith", emails=["same@mail.com"])  # a typo of it
    c = src.agent(f"Bob {word}", emails=["same@mail.com"])
    page = src.page("team-1", [{"name": f"{word} Smith", "phone": "2125550101"}])
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    assert agent_of(deployed_db, "new_agents", a) == agent_of(deployed_db, "new_agents", b)
    assert agent_of(deployed_db, "new_agents", c) != agent_of(deployed_db, "new_agents", a)
    assert member_agent(deployed_db, page, 1) == agent_of(deployed_db, "new_agents", a)


def test_the_pairs_allowed_on_mixed_keys_are_never_joined_by_a_nested_loop(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The planner takes a key's fitting and non-fitting name pairs for independent, expects
    one row of their three-way join where there are thousands, and may then scan every pair
    once per row: one such plan took 80 s of a 1% increment. The statement's plan, read
    through auto_explain, has no nested loop."""
    src = Sources()
    # office lines held by three people each, and a few by two spellings of one person and
    # somebody else: keys whose names do not all fit ("mixed"), most pairs of them apart
    firsts = ["Anna", "Carl", "Eva", "Hugo", "Ines", "Karl", "Lena", "Otto", "Rosa", "Tom"]
    lasts = ["Berg", "Dahl", "Frost", "Gray", "Holm", "Kent", "Lund", "Moss", "Nash", "Park"]
    for i in range(100):
        line = f"(555) 301-{i:04d}"
        if i % 5 == 0:
            names = ["Robert Miller", "Bob Miller", f"{firsts[i % 10]} {lasts[i // 10]}"]
        else:
            names = [f"{firsts[(i + k) % 10]} {lasts[(i // 10 + 3 * k) % 10]}" for k in range(3)]
        held = [src.agent(name, phones=[line], team=f"team-{i}-{name}") for name in names]
        if i == 0:
            robert, bob, other = held
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    plans = plans_of(
        deployed_db,
        [
            "SELECT public.run_unified_member_pipeline('{}')",
            "SELECT public.run_unified_merge_batch('{}')",
        ],
    )
    result = fetch(deployed_db, "SELECT status FROM public.unified_merge_logs ORDER BY id")
    assert result == [("success",), ("success",)]
    assert agent_of(deployed_db, "new_agents", robert) == agent_of(deployed_db, "new_agents", bob)
    assert agent_of(deployed_db, "new_agents", other) != agent_of(deployed_db, "new_agents", bob)
    allowed = plan_of(plans, "CREATE UNLOGGED TABLE syncpipe_work.sp_keyallow")
    assert "Nested Loop" not in allowed, allowed


def _item_and_a_third_agent(invoke: Invoke, dsn: str, tmp_path: Path) -> tuple[dict, int]:
    """An open item between Christopher Johnson and a member "Chris Johnsno", and the agent of
    an unrelated third record."""
    src = Sources()
    src.agent("Christopher Johnson", emails=["cj@mail.com"])
    src.page("team-1", [{"name": "Chris Johnsno", "email": "chris.j@work.com"}])
    third = src.agent("Dana Whitfield", team="team-5", emails=["dana.w@mail.com"])
    load_and_merge(invoke, dsn, src, tmp_path / "data")
    item = invoke(["review", "--json"], dsn=dsn).json()["items"][0]
    return item, agent_of(dsn, "new_agents", third)


def test_review_list_names_the_end_of_a_chain_of_hand_retirements(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """One side of an open item retired by hand into an agent that is itself retired by hand:
    the list shows the agent at the end of the chain (its name and contacts), not the one in
    between (it followed one hop)."""
    item, third = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    retired = item["b"]["agent_id"]
    with psycopg.connect(deployed_db) as conn:
        fourth = conn.execute(
            "INSERT INTO new_unified_agents (full_name, emails) "
            "VALUES ('Dana Whitfield-Ray', '{dana.ray@mail.com}') RETURNING agent_id"
        ).fetchone()[0]
        conn.execute("UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s",
                     (fourth, third))  # fmt: skip
        conn.execute("UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s",
                     (third, retired))  # fmt: skip
    shown = invoke(["review", "--json"], dsn=deployed_db).json()["items"][0]
    assert shown["id"] == item["id"]
    assert (shown["b"]["agent_id"], shown["b"]["current_agent_id"]) == (retired, fourth)
    assert (shown["b"]["full_name"], shown["b"]["emails"]) == (
        "Dana Whitfield-Ray",
        ["dana.ray@mail.com"],
    )
    assert shown["a"]["current_agent_id"] == item["a"]["agent_id"]
    text = invoke(["review"], dsn=deployed_db, env={"COLUMNS": "200"}).stdout
    assert "Dana Whitfield-Ray" in text, text


def test_review_decision_after_an_agent_was_retired_by_hand_is_refused_once_then_taken(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """One side of an open item retired by hand into a third agent (merged_into set through
    the API): the first accept is refused, saying so, and the item names the survivor from
    then on, the retired agent's records with it; the same accept again is taken."""
    item, third = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    retired = item["b"]["agent_id"]
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute(
            "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (third, retired)
        )
    out = invoke(["review", "accept", str(item["id"])], dsn=deployed_db, code=1)
    assert f"agent {retired} was merged into agent {third}" in out.stderr, out.stderr
    assert (
        one(
            deployed_db,
            "SELECT candidate_agent_id FROM merge_review_queue WHERE id = %s",
            (item["id"],),
        )
        == third
    )
    assert not fetch(
        deployed_db, "SELECT 1 FROM unified_agent_sources WHERE agent_id = %s", (retired,)
    )
    # the survivor's stored record holds what it took: its records, their e-mails, the flag
    sources, emails, flagged = fetch(
        deployed_db,
        "SELECT source_count, emails, needs_review FROM new_unified_agents WHERE agent_id = %s",
        (third,),
    )[0]
    assert (sources, sorted(emails), flagged) == (2, ["chris.j@work.com", "dana.w@mail.com"], True)
    assert_contact_keys_in_step(deployed_db)
    shown = invoke(["review", "--json"], dsn=deployed_db).json()["items"][0]
    assert shown["b"]["agent_id"] == third and shown["b"]["current_agent_id"] == third
    out = invoke(["review", "accept", str(item["id"])], dsn=deployed_db)
    assert "accepted" in out.stdout
    survivor = min(item["a"]["agent_id"], third)
    assert (
        one(
            deployed_db,
            "SELECT count(DISTINCT coalesce(a.merged_into, a.agent_id)) FROM unified_agent_sources s "
            "JOIN new_unified_agents a ON a.agent_id = s.agent_id",
        )
        == 1
    )
    assert (
        one(
            deployed_db,
            "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s",
            (retired,),
        )
        == survivor
    )


def test_review_reject_of_two_agents_joined_by_hand_is_refused_and_takes_the_item_off(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Both sides of an open item made one agent by hand: a reject cannot be taken (exit 1,
    saying why), and the item, settled, leaves the queue rather than stay open for ever."""
    item, _ = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    low, high = sorted((item["a"]["agent_id"], item["b"]["agent_id"]))
    with psycopg.connect(deployed_db) as conn:
        conn.execute(
            "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (low, high)
        )
    out = invoke(["review", "reject", str(item["id"])], dsn=deployed_db, code=1)
    assert "both sides are one agent now" in out.stderr and "nothing was decided" in out.stderr
    assert invoke(["review", "--json"], dsn=deployed_db).json()["items"] == []
    assert not fetch(deployed_db, "SELECT 1 FROM merge_decisions")


def test_review_decision_on_an_item_that_became_the_same_pair_as_another_names_that_one(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Two open items from one agent to two others; the second other retired by hand into the
    first: both items now compare the same agents. A decision on the one taken off the queue
    says which item to decide on, and decides nothing."""
    src = Sources()
    src.agent("Christopher Johnson", emails=["cj@mail.com"])
    src.page(
        "team-1",
        [
            {"name": "Chris Johnsno", "email": "chris.j@work.com"},
            {"name": "Christoper Jonson", "email": "c.jonson@work.com"},
        ],
    )
    load_and_merge(invoke, deployed_db, src, tmp_path / "data")
    items = invoke(["review", "--json"], dsn=deployed_db).json()["items"]
    assert len(items) == 2, items
    first, second = sorted(items, key=lambda i: i["id"])
    hub = (
        {first["a"]["agent_id"], first["b"]["agent_id"]}
        & {second["a"]["agent_id"], second["b"]["agent_id"]}
    ).pop()
    one_other = ({first["a"]["agent_id"], first["b"]["agent_id"]} - {hub}).pop()
    two_other = ({second["a"]["agent_id"], second["b"]["agent_id"]} - {hub}).pop()
    with psycopg.connect(deployed_db) as conn:
        conn.execute(
            "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s",
            (two_other, one_other),
        )
    out = invoke(["review", "reject", str(first["id"])], dsn=deployed_db, code=1)
    assert f"same agents as review item {second['id']}" in out.stderr, out.stderr
    assert f"decide on review item {second['id']}" in out.stderr
    assert not fetch(deployed_db, "SELECT 1 FROM merge_decisions")
    assert [i["id"] for i in invoke(["review", "--json"], dsn=deployed_db).json()["items"]] == [
        second["id"]
    ]


def test_review_decision_refuses_a_merged_into_cycle_made_by_hand(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The two agents of an item pointed at each other by hand: the edit that closes the
    cycle is refused, naming both agents (it was taken, and the agents' records belonged to no
    active agent). A cycle made with the triggers off (a restore, a replica's role): no
    decision is taken (exit 1, naming the cycle), and nothing changes."""
    item, _ = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    a, b = item["a"]["agent_id"], item["b"]["agent_id"]
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute("UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (b, a))
        with pytest.raises(psycopg.errors.CheckViolation, match=f"agent {b} cannot be merged"):
            conn.execute(
                "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (a, b)
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation, match="leads back to it"):
            conn.execute(  # (one statement closing the cycle: both rows seen)
                "UPDATE new_unified_agents SET merged_into = CASE agent_id WHEN %s THEN %s "
                "ELSE %s END WHERE agent_id IN (%s, %s)",
                (a, b, a, a, b),
            )
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (b, a))
        conn.execute("UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (a, b))
    for decision in ("accept", "reject"):
        out = invoke(["review", decision, str(item["id"])], dsn=deployed_db, code=1)
        assert "leads to no active agent (a cycle" in out.stderr, out.stderr
    assert not fetch(deployed_db, "SELECT 1 FROM merge_decisions")
    assert (
        one(deployed_db, "SELECT status FROM merge_review_queue WHERE id = %s", (item["id"],))
        == "open"
    )


def _decision_waiting_for_a_row(dsn: str, item_id: int) -> subprocess.Popen[str]:
    """`syncpipe review accept ITEM` in a process of its own, once it waits for a lock."""
    decision = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "review", "accept", str(item_id)],
        env={
            **os.environ,
            "SYNCPIPE_DATABASE_URL": dsn,
            "SYNCPIPE_APPLICATION_NAME": "decision-under-test",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not fetch(
        dsn,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND application_name = 'decision-under-test'",
    ):
        assert time.monotonic() < deadline and decision.poll() is None
        time.sleep(0.02)
    return decision


def test_review_decision_gives_up_on_an_agent_edit_left_open(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An agent of the item edited in a transaction left open: the decision waits up to
    SYNCPIPE_LOCK_TIMEOUT, then exits 3 naming it; nothing is decided."""
    item, _ = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    with psycopg.connect(deployed_db) as editor:
        editor.execute(
            "UPDATE new_unified_agents SET full_name = 'C. Johnson' WHERE agent_id = %s",
            (item["a"]["agent_id"],),
        )
        out = invoke(
            ["review", "accept", str(item["id"])],
            dsn=deployed_db,
            env={"SYNCPIPE_LOCK_TIMEOUT": "1"},
            code=3,
        )
    assert "SYNCPIPE_LOCK_TIMEOUT" in out.stderr and "gave up after 1 s" in out.stderr
    assert (
        one(deployed_db, "SELECT status FROM merge_review_queue WHERE id = %s", (item["id"],))
        == "open"
    )


def test_review_decision_in_a_deadlock_says_so_and_decides_nothing(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A decision waiting for an agent a session edits, while that session waits for the
    merge's lock the decision holds: PostgreSQL rolls the decision back. One sentence says so
    and to run it again, exit 3 (it said "Lost the database connection"); nothing is decided,
    and the decision taken again goes through."""
    item, _ = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    with psycopg.connect(deployed_db) as editor:
        # (the decision, waiting first, finds the deadlock: it checks after 1 s, the editor later)
        editor.execute("SET deadlock_timeout = '60s'")
        editor.execute(
            "UPDATE new_unified_agents SET full_name = 'C. Johnson' WHERE agent_id = %s",
            (item["a"]["agent_id"],),
        )
        decision = _decision_waiting_for_a_row(deployed_db, item["id"])
        editor.execute("SELECT pg_advisory_xact_lock(1398361667, 2)")
        out, err = decision.communicate(timeout=120)
    assert decision.returncode == 3, out + err
    assert "rolled back to let another session go on" in err and "Run it again" in err, err
    assert (
        one(deployed_db, "SELECT status FROM merge_review_queue WHERE id = %s", (item["id"],))
        == "open"
    )
    invoke(["review", "accept", str(item["id"])], dsn=deployed_db)
    assert (
        one(deployed_db, "SELECT status FROM merge_review_queue WHERE id = %s", (item["id"],))
        == "accepted"
    )


def test_a_merge_moves_the_records_of_an_agent_retired_by_hand_and_keeps_a_rejection(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Two agents told apart by a reject; one of them then retired by hand into a third agent,
    through a chain of two. The next merge moves the retired agent's records and review items
    to the end of the chain before it matches: a new record of the same name and team joins
    the survivor, not the retired agent, and the rejected pair is not queued again."""
    item, third = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    a, b = item["a"]["agent_id"], item["b"]["agent_id"]
    invoke(["review", "reject", str(item["id"])], dsn=deployed_db)
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")
        middle = conn.execute(
            "INSERT INTO new_unified_agents (full_name, merged_into) VALUES ('Go Between', %s) "
            "RETURNING agent_id",
            (third,),
        ).fetchone()
        assert middle is not None
        conn.execute(
            "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (middle[0], b)
        )
    more = Sources(_serial=100)
    again = more.agent("Christopher Johnson", emails=["cj@mail.com", "chris.j@work.com"])
    load_and_merge(invoke, deployed_db, more, tmp_path / "d2")
    assert not fetch(
        deployed_db,
        "SELECT 1 FROM unified_agent_sources s JOIN new_unified_agents a USING (agent_id) "
        "WHERE a.merged_into IS NOT NULL",
    )
    assert (
        one(deployed_db, "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s", (b,))
        == third
    )
    assert agent_of(deployed_db, "new_agents", again) in (a, third)
    assert fetch(
        deployed_db,
        "SELECT agent_id FROM new_unified_agents WHERE agent_id IN (%s, %s) "
        "AND merged_into IS NULL ORDER BY 1",
        (a, third),
    ) == sorted([(a,), (third,)])
    open_pairs = fetch(
        deployed_db,
        "SELECT least(agent_id, candidate_agent_id), greatest(agent_id, candidate_agent_id) "
        "FROM merge_review_queue WHERE status = 'open'",
    )
    assert (min(a, third), max(a, third)) not in open_pairs
    assert_contact_keys_in_step(deployed_db)


def test_review_decision_sees_a_hand_retirement_committed_while_it_waited(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A hand retirement of one side of the item, committed while a decision waits for its
    row: the decision sees it and is refused once, saying so; nothing is overwritten."""
    item, third = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    retired = item["b"]["agent_id"]
    editor = psycopg.connect(deployed_db)
    editor.execute(
        "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s", (third, retired)
    )
    decision = _decision_waiting_for_a_row(deployed_db, item["id"])
    editor.commit()
    editor.close()
    out, err = decision.communicate(timeout=120)
    assert decision.returncode == 1, out + err
    assert f"agent {retired} was merged into agent {third}" in err
    assert (
        one(
            deployed_db,
            "SELECT merged_into FROM new_unified_agents WHERE agent_id = %s",
            (retired,),
        )
        == third
    )


def test_review_decision_waits_for_another_decision_or_a_merge(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A decision while another decision or a merge holds the merge's lock waits for it (up
    to SYNCPIPE_LOCK_TIMEOUT) rather than fail at once, then is taken."""
    item, _ = _item_and_a_third_agent(invoke, deployed_db, tmp_path)
    with psycopg.connect(deployed_db) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(1398361667, 2)")
        decision = subprocess.Popen(
            [sys.executable, "-m", "syncpipe", "review", "accept", str(item["id"])],
            env={**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        assert decision.poll() is None
    out, err = decision.communicate(timeout=120)
    assert decision.returncode == 0, out + err
    assert "accepted" in out
