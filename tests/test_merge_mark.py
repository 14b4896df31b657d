"""Where a merge starts looking for pending records (issue 16 item 3, sql/ddl/120): after a
complete run only source rows changed since its mark are read, and nothing a concurrent
writer commits is ever skipped. Real PostgreSQL, the real CLI; concurrency with real
connections.

(The server is shared with parallel test workers: their transactions can hold a mark back,
which only ever makes a merge read more rows. So these tests assert what the merge matched
and how it looked, never that a row was left unread.)"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.agents import Sources, agent_of, member_agent
from tests.helpers import Invoke, fetch, one


def _feed(folder: Path, n: int, *, start: int = 0, suffix: str = "") -> Sources:
    src = Sources(_serial=1000 * (start + 1))
    for i in range(start, start + n):
        src.agent(f"Given{i:03d} Family{i:03d}", emails=[f"p{i}@mail.com"], team=f"t{i % 5}")
    src.page("t0", [{"name": f"Member{start:03d} Page", "email": f"m{start}@mail.com"}])
    src.write(folder, suffix)
    return src


def _merge(invoke: Invoke, dsn: str, *extra: str, env: dict[str, str] | None = None) -> dict:
    return invoke(["merge", "--json", *extra], dsn=dsn, env=env).json()["merge"]


def _mark(dsn: str) -> tuple[int, int] | None:
    rows = fetch(dsn, "SELECT pending_from, log_id FROM syncpipe_internal.merge_mark")
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def test_a_complete_run_stores_a_mark_and_the_next_reads_changed_rows_only(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    _feed(tmp_path / "a", 20)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    first = _merge(invoke, deployed_db)
    assert first["pending_scan"] == "all"  # no mark yet
    assert first["pending"] == 21
    mark = _mark(deployed_db)
    assert mark is not None
    assert mark[1] == one(
        deployed_db, "SELECT max(id) FROM unified_merge_logs WHERE run_kind = 'merge'"
    )
    # Every row the first run read was changed below its mark... unless a transaction of
    # another test was running then (the mark stops at it): never above the mark's cluster.
    assert mark[0] <= one(deployed_db, "SELECT pg_current_xact_id()::text::bigint")

    again = _merge(invoke, deployed_db)
    assert again["pending_scan"] == "changed"
    assert again["pending"] == 0

    # New rows, and a changed row: both found from the mark.
    _feed(tmp_path / "b", 3, start=20, suffix="_more")
    invoke(["load", str(tmp_path / "b")], dsn=deployed_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE new_agents SET full_name = 'Given000 Family000-Smith' "
            "WHERE full_name = 'Given000 Family000'"
        )
    third = _merge(invoke, deployed_db)
    assert third["pending_scan"] == "changed"
    assert third["pending_new_agents"] == 4
    assert third["changed_records"] == 1
    assert one(deployed_db, "SELECT count(*) FROM unified_agent_sources") == 21 + 4
    names = fetch(
        deployed_db,
        "SELECT s.full_name FROM unified_agent_sources s JOIN new_agents a "
        "ON s.source = 'new_agents' AND s.source_id = a.supabase_uuid::text "
        "WHERE a.full_name LIKE 'Given000 %'",
    )
    assert names == [("Given000 Family000-Smith",)]


def test_a_load_committing_during_the_merge_is_matched_by_the_next_run(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A writer's transaction that began before the merge and commits after it: its rows
    carry a transaction id below the merge's end, which the merge could not see. The mark
    stops at that transaction, so the next run reads them."""
    _feed(tmp_path / "a", 10)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    _merge(invoke, deployed_db)

    writer = psycopg.connect(deployed_db)
    try:
        writer.execute(
            "INSERT INTO new_agents (supabase_uuid, full_name, email_clean, team_id) "
            "VALUES ('00000000-0000-4000-8000-00000000abcd', 'Late Writer', "
            "'[\"late@mail.com\"]', 't1')"
        )
        late_xid = int(writer.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0])
        # Newer transactions commit meanwhile (the merge's own, a load): the late writer's id
        # is below theirs.
        _feed(tmp_path / "b", 2, start=10, suffix="_more")
        invoke(["load", str(tmp_path / "b")], dsn=deployed_db)
        during = _merge(invoke, deployed_db)
        assert during["pending_new_agents"] == 2  # the uncommitted row is not visible
        mark = _mark(deployed_db)
        assert mark is not None and mark[0] <= late_xid
        writer.commit()
    finally:
        writer.close()

    after = _merge(invoke, deployed_db)
    assert after["pending_scan"] == "changed"
    assert after["pending_new_agents"] == 1
    assert agent_of(deployed_db, "new_agents", "00000000-0000-4000-8000-00000000abcd") > 0
    # And the mark moved past it once nothing older was running.
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM new_agents a LEFT JOIN unified_agent_sources l "
            "ON l.source = 'new_agents' AND l.source_id = a.supabase_uuid::text "
            "WHERE l.source_id IS NULL",
        )
        == 0
    )


def test_lineage_deleted_or_edited_by_hand_or_a_member_set_unprocessed_is_matched_again(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Deleting a record's lineage, editing it (its version set back, its key moved), setting
    a member back to unprocessed or changing its id: each asks for the record to be matched
    again, so the next run reads it though its row's changed_xid is old."""
    src = _feed(tmp_path / "a", 6)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    _merge(invoke, deployed_db)
    lost, stale = src.agents[2]["supabase_uuid"], src.agents[3]["supabase_uuid"]
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM unified_agent_sources WHERE source = 'new_agents' AND source_id = %s",
            (lost,),
        )
        conn.execute(
            "UPDATE unified_agent_sources SET source_version = '-infinity' "
            "WHERE source = 'new_agents' AND source_id = %s",
            (stale,),
        )
        conn.execute("UPDATE unified_company_member SET processed = false")
    again = _merge(invoke, deployed_db)
    assert again["pending_scan"] == "changed"
    assert (again["pending_new_agents"], again["pending_members"]) == (2, 1)
    assert again["changed_records"] == 2  # the stale one and the unprocessed member
    assert agent_of(deployed_db, "new_agents", lost) > 0
    # the member matched again is processed again (and so not pending in the next run)
    assert one(deployed_db, "SELECT count(*) FROM unified_company_member WHERE NOT processed") == 0
    assert one(deployed_db, "SELECT count(*) FROM syncpipe_internal.merge_requeue") == 0

    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("UPDATE unified_company_member SET id = id + 1000")
        moved = conn.execute(
            "UPDATE unified_agent_sources SET source_id = '00000000-0000-4000-8000-00000000dead' "
            "WHERE source = 'new_agents' AND source_id = %s RETURNING 1",
            (src.agents[4]["supabase_uuid"],),
        ).fetchall()
    assert moved == [(1,)]
    after = _merge(invoke, deployed_db)
    assert after["pending_scan"] == "changed"
    assert (after["pending_new_agents"], after["pending_members"]) == (1, 1)


def test_truncated_lineage_makes_the_next_run_read_every_row(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    _feed(tmp_path / "a", 6)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    first = _merge(invoke, deployed_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("TRUNCATE unified_agent_sources")
    again = _merge(invoke, deployed_db)
    assert again["pending_scan"] == "all"
    assert again["pending"] == first["pending"]
    assert _merge(invoke, deployed_db)["pending_scan"] == "changed"


def test_a_mark_of_another_cluster_or_a_restored_copy_is_not_trusted(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A mark counts transaction ids of the cluster and the history it was stored in: one from
    another cluster (its system identifier), or a copy of the row (a dump restored: its xmin),
    makes the merge read every row once. A row written with an old changed_xid of its own
    (restored from a copy of the table) is read by --rescan."""
    _feed(tmp_path / "a", 6)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    _merge(invoke, deployed_db)
    assert _merge(invoke, deployed_db)["pending_scan"] == "changed"

    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("UPDATE syncpipe_internal.merge_mark SET system_identifier = 42")
    assert _merge(invoke, deployed_db)["pending_scan"] == "all"
    own = one(deployed_db, "SELECT system_identifier FROM pg_control_system()")
    assert fetch(deployed_db, "SELECT system_identifier FROM syncpipe_internal.merge_mark") == [
        (own,)
    ]
    assert _merge(invoke, deployed_db)["pending_scan"] == "changed"

    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE copy AS SELECT * FROM syncpipe_internal.merge_mark")
        conn.execute("DELETE FROM syncpipe_internal.merge_mark")
        conn.execute("INSERT INTO syncpipe_internal.merge_mark SELECT * FROM copy")
    assert _merge(invoke, deployed_db)["pending_scan"] == "all"

    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO new_agents (supabase_uuid, full_name, email_clean, team_id, changed_xid)"
            " VALUES ('00000000-0000-4000-8000-0000000000cc', 'Restored Copy', "
            "'[\"restored@mail.com\"]', 't1', '3')"
        )
    assert _merge(invoke, deployed_db)["pending"] == 0  # (documented: rows restored this way)
    rescanned = _merge(invoke, deployed_db, "--rescan")
    assert rescanned["pending_scan"] == "all"
    assert rescanned["pending"] == 1
    assert agent_of(deployed_db, "new_agents", "00000000-0000-4000-8000-0000000000cc") > 0


def test_a_pipeline_step_writing_source_rows_after_the_merge_leaves_them_for_the_next(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A step of SYNCPIPE_PIPELINE_STEPS runs after the merge, in its transaction: what it
    writes to a source table is newer than the merge and must be matched by the next run."""
    _feed(tmp_path / "a", 6)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.tidy_names() RETURNS void LANGUAGE sql AS $$ "
            "UPDATE public.new_agents SET full_name = upper(full_name) "
            "WHERE full_name = 'Given001 Family001' $$"
        )
    steps = {"SYNCPIPE_PIPELINE_STEPS": '["public.tidy_names"]'}
    invoke(["merge"], dsn=deployed_db, env=steps)
    after = _merge(invoke, deployed_db)
    assert after["pending_scan"] == "changed"
    assert after["changed_records"] == 1
    assert fetch(
        deployed_db,
        "SELECT full_name FROM unified_agent_sources WHERE full_name ILIKE 'given001 %'",
    ) == [("GIVEN001 FAMILY001",)]


def test_a_writer_that_began_before_another_still_leaves_a_newer_version(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Writer A begins; writer B changes a row and commits; a merge matches B's version; A then
    changes the row and commits. A's version is the newer one and is matched by the next run
    (its updated_at is the time of its change, not of its transaction's start)."""
    src = _feed(tmp_path / "a", 4)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    _merge(invoke, deployed_db)
    key = src.agents[1]["supabase_uuid"]
    first = psycopg.connect(deployed_db)
    try:
        first.execute("SELECT now()")  # its transaction (and now()) starts here
        with psycopg.connect(deployed_db, autocommit=True) as second:
            second.execute(
                "UPDATE new_agents SET full_name = 'Second Writer' WHERE supabase_uuid = %s",
                (key,),
            )
        assert _merge(invoke, deployed_db)["changed_records"] == 1
        first.execute(
            "UPDATE new_agents SET full_name = 'First Writer' WHERE supabase_uuid = %s", (key,)
        )
        first.commit()
    finally:
        first.close()
    assert _merge(invoke, deployed_db)["changed_records"] == 1
    assert fetch(
        deployed_db,
        "SELECT full_name FROM unified_agent_sources WHERE source_id = %s",
        (key,),
    ) == [("First Writer",)]


def test_a_batch_that_leaves_records_keeps_the_mark_and_a_dry_run_stores_none(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    _feed(tmp_path / "a", 30)
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    invoke(["merge", "--dry-run"], dsn=deployed_db)
    assert _mark(deployed_db) is None

    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SELECT run_unified_member_pipeline()")
        first = conn.execute("SELECT run_unified_merge_batch('{\"limit\": 10}')").fetchone()[0]
        assert first["pending"] == 10
        assert _mark(deployed_db) is None  # 21 records wait: no mark yet
        conn.execute("SELECT run_unified_merge_batch('{\"limit\": 10}')")
        last = conn.execute("SELECT run_unified_merge_batch('{\"limit\": 20}')").fetchone()[0]
    assert last["pending"] == 11
    mark = _mark(deployed_db)
    assert mark is not None and mark[1] == last["log_id"]
    assert one(deployed_db, "SELECT count(*) FROM unified_agent_sources") == 31

    # A later batch that leaves records keeps the earlier mark; the one that ends them moves it.
    _feed(tmp_path / "b", 30, start=30, suffix="_more")
    invoke(["load", str(tmp_path / "b")], dsn=deployed_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SELECT run_unified_member_pipeline()")
        partial = conn.execute("SELECT run_unified_merge_batch('{\"limit\": 10}')").fetchone()[0]
        assert partial["pending"] == 10
        assert partial["pending_scan"] == "changed"
        assert _mark(deployed_db) == mark
        rest = conn.execute("SELECT run_unified_merge_batch()").fetchone()[0]
    assert rest["pending"] == 21
    moved = _mark(deployed_db)
    assert moved is not None and moved[1] == rest["log_id"] and moved[0] >= mark[0]
    assert one(deployed_db, "SELECT count(*) FROM unified_agent_sources") == 62


@pytest.mark.parametrize(
    ("snapshot", "own", "mark"),
    [
        # Nothing else ran: own id is the newest and equals xmax; ids below are done.
        ("100:100:", "100", 101),
        # No id of its own (a dry run): everything below xmax is visible.
        ("100:100:", None, 100),
        # An older transaction still runs: the mark stops at it.
        ("90:100:90,95", "97", 90),
        ("90:100:95", "90", 95),
        # Later ones ended after this one began: all below xmax is visible.
        ("100:105:", "103", 105),
        ("100:105:101,104", "103", 101),
        # Transactions that began before this one still run above xmax: they are not seen.
        ("100:103:", "105", 103),
    ],
)
def test_the_mark_is_the_first_transaction_a_snapshot_may_not_see(
    deployed_db: str, snapshot: str, own: str | None, mark: int
) -> None:
    got = one(
        deployed_db,
        "SELECT syncpipe_internal.merge_snapshot_mark(%s::pg_snapshot, %s::xid8)::text",
        (snapshot, own),
    )
    assert int(got) == mark


def test_rescan_finds_a_row_rewritten_with_the_triggers_disabled(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A feed row corrected with the triggers off keeps its updated_at and changed_xid: only
    --rescan sees that it was written after its match (its xmin), and matches it again."""
    src = Sources()
    a = src.agent("Zebulon Quarry", team="team-b", emails=["zq.home@x.com"])
    b = src.agent("Zebulon Quarry", team="team-a", emails=["zq.one@x.com"])
    src.write(tmp_path / "a")
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    _merge(invoke, deployed_db)
    assert agent_of(deployed_db, "new_agents", a) != agent_of(deployed_db, "new_agents", b)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            'UPDATE new_agents SET email_clean = \'["zq.home@x.com", "zq.one@x.com"]\' '
            "WHERE supabase_uuid = %s",
            (b,),
        )
    assert _merge(invoke, deployed_db)["pending"] == 0  # (documented: the mark misses it)
    rescanned = _merge(invoke, deployed_db, "--rescan")
    assert (rescanned["pending"], rescanned["changed_records"]) == (1, 1)
    assert agent_of(deployed_db, "new_agents", a) == agent_of(deployed_db, "new_agents", b)
    assert _merge(invoke, deployed_db, "--rescan")["pending"] == 0  # matched now: not again


def test_rescan_reads_a_page_rewritten_with_the_triggers_disabled(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A team page given a member with the triggers off keeps members_synced: only --rescan
    reads it again; its unchanged members stay as they are (same ids), the new one is matched."""
    src = Sources()
    page = src.page("team-r", [{"name": "Ada Rowe", "email": "ada.rowe@x.com"}])
    src.write(tmp_path / "a")
    invoke(["load", str(tmp_path / "a")], dsn=deployed_db)
    _merge(invoke, deployed_db)
    before = fetch(deployed_db, "SELECT id, record_hash FROM unified_company_member")
    members = [
        {"name": "Ada Rowe", "email": "ada.rowe@x.com"},
        {"name": "Bo Lind", "email": "bo.lind@x.com"},
    ]
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE bronze.company_info_raw SET team_members = %s WHERE research_uuid = %s",
            (Jsonb(members), page),
        )
    assert _merge(invoke, deployed_db)["pending"] == 0  # (documented: the mark misses it)
    rescanned = _merge(invoke, deployed_db, "--rescan")
    assert rescanned["pending"] == 1
    after = fetch(deployed_db, "SELECT id, record_hash FROM unified_company_member ORDER BY id")
    assert after[0] == before[0] and len(after) == 2
    assert member_agent(deployed_db, page, 2) != member_agent(deployed_db, page, 1)
    assert _merge(invoke, deployed_db, "--rescan")["pending"] == 0  # nothing new: no change
