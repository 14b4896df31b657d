"""A load and a merge at the same time lose nothing: the member pipeline marks synced only the
page versions it read, so a page a load changes meanwhile is taken up by the next merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.helpers import fetch, one, plan_of, plans_of, require_language

PAGES = 1500
MEMBERS = "SELECT research_uuid::text, member_name FROM public.unified_company_member ORDER BY 1, 2"


def _pages(path: Path, *, extra: bool) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("research_uuid,team_id,website,team_members\n")
        for i in range(PAGES):
            members = [{"name": f"Member {i} {k}", "email": f"m{i}.{k}@x{i}.com"} for k in range(3)]
            if extra:
                members.append({"name": f"Newcomer {i}", "email": f"new{i}@x{i}.com"})
            cell = json.dumps(members).replace('"', '""')
            fh.write(f'{uuid.UUID(int=i + 1, version=4)},team-{i},https://x{i}.com,"{cell}"\n')
    return path


def _cli(dsn: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": dsn, "SYNCPIPE_LOAD_BATCH_ROWS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "syncpipe", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(dsn: str, *args: str) -> None:
    proc = _cli(dsn, *args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err


@pytest.fixture(scope="module")
def serial_members(
    pg_server: str, deployed_template: str, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[str, str]]:
    """Members after load v1, merge, load v2 (the same file changed), merge, one after the
    other."""
    from tests.conftest import create_database, drop_database

    name = create_database(pg_server, template=deployed_template)
    dsn = make_conninfo(pg_server, dbname=name)
    folder = tmp_path_factory.mktemp("serial")
    try:
        _run(dsn, "load", str(_pages(folder / "raw_company_info.csv", extra=False)))
        _run(dsn, "merge")
        _run(dsn, "load", str(_pages(folder / "raw_company_info.csv", extra=True)))
        _run(dsn, "merge")
        return [(str(a), str(b)) for a, b in fetch(dsn, MEMBERS)]
    finally:
        drop_database(pg_server, name)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8, 1.5])
def test_load_during_merge_loses_nothing(
    deployed_db: str, tmp_path: Path, serial_members: list[tuple[str, str]], delay: float
) -> None:
    """The changed file is loaded ``delay`` seconds into a merge; after one more merge the
    members equal those of the serial run and no page is left unsynced."""
    _run(deployed_db, "load", str(_pages(tmp_path / "raw_company_info.csv", extra=False)))
    v2 = _pages(tmp_path / "raw_company_info.csv", extra=True)  # a changed version of it
    merge = _cli(deployed_db, "merge")
    time.sleep(delay)
    load = _cli(deployed_db, "load", str(v2))
    for proc in (merge, load):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
    _run(deployed_db, "merge")
    assert [(str(a), str(b)) for a, b in fetch(deployed_db, MEMBERS)] == serial_members
    assert len(serial_members) == PAGES * 4
    assert (
        one(deployed_db, "SELECT count(*) FROM bronze.company_info_raw WHERE NOT members_synced")
        == 0
    )


def test_pipeline_does_not_mark_a_page_changed_while_it_ran(
    deployed_db: str, tmp_path: Path
) -> None:
    """A page updated by another transaction while the pipeline runs (its final UPDATE waits
    for that transaction) stays unsynced, and the next run takes its new member up."""
    _run(deployed_db, "load", str(_pages(tmp_path / "raw_company_info.csv", extra=False)))
    key = str(uuid.UUID(int=1, version=4))
    loader = psycopg.connect(deployed_db)
    loader.execute(
        "UPDATE bronze.company_info_raw SET team_members = team_members || "
        """'[{"name": "Late Joiner", "email": "late@x0.com"}]'::jsonb WHERE research_uuid = %s""",
        (key,),
    )  # row locked, not committed: the pipeline read the old version
    result: dict[str, object] = {}

    def pipeline() -> None:
        with psycopg.connect(deployed_db, autocommit=True) as conn:
            result["out"] = conn.execute("SELECT public.run_unified_member_pipeline()").fetchone()

    worker = threading.Thread(target=pipeline)
    worker.start()
    deadline = time.monotonic() + 60
    while not fetch(
        deployed_db,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()",
    ):
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.02)
    loader.commit()
    loader.close()
    worker.join(60)
    assert (
        one(
            deployed_db,
            "SELECT members_synced FROM bronze.company_info_raw WHERE research_uuid = %s",
            (key,),
        )
        is False
    )
    _run(deployed_db, "merge")
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM public.unified_company_member WHERE member_name = 'Late Joiner'",
        )
        == 1
    )


def _unsynced_lookup(dsn: str) -> dict[str, int]:
    """What finding the unsynced pages costs, as the member pipeline finds them: the index
    entries it walks and the table blocks it reads to learn they are dead versions."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        row = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
            "SELECT research_uuid FROM bronze.company_info_raw WHERE NOT members_synced"
        ).fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    return {"rows": plan["Actual Rows"], "table_blocks": plan.get("Exact Heap Blocks", 0)}


def test_a_merge_that_synced_most_pages_vacuums_them(deployed_db: str, tmp_path: Path) -> None:
    """Marking 1,500 pages synced leaves 1,500 dead page versions behind the index of unsynced
    pages; the merge vacuums them after its commit, so the next run reads none of them back
    (on a server without autovacuum, every later run did). A merge that synced few does not."""
    _run(deployed_db, "load", str(_pages(tmp_path / "raw_company_info.csv", extra=False)))
    proc = _cli(deployed_db, "merge", "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert json.loads(out)["pages_vacuumed"] is True
    assert _unsynced_lookup(deployed_db) == {"rows": 0, "table_blocks": 0}
    assert (
        one(
            deployed_db,
            "SELECT vacuum_count FROM pg_stat_user_tables "
            "WHERE relid = 'bronze.company_info_raw'::regclass",
        )
        == 1
    )

    # One page changed of 1,500: no vacuum (autovacuum's threshold is 50 + 20%).
    with psycopg.connect(deployed_db) as conn:
        conn.execute(
            "UPDATE bronze.company_info_raw SET team_members = team_members || "
            """'[{"name": "Late Joiner", "email": "late@x0.com"}]'::jsonb """
            "WHERE research_uuid = %s",
            (str(uuid.UUID(int=1, version=4)),),
        )
    proc = _cli(deployed_db, "merge", "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    result = json.loads(out)
    assert (result["pipeline"]["pages"], result["pages_vacuumed"]) == (1, False)
    assert _unsynced_lookup(deployed_db)["rows"] == 0


def test_the_pipeline_finds_a_changed_page_by_index_whatever_the_statistics_say(
    deployed_db: str, tmp_path: Path
) -> None:
    """With statistics of the pages table taken before the last run (every page unsynced), or
    none (autovacuum off: half of them), the planner read every page, 300 MB at 1M members,
    to find the few a load changed. The pipeline reads them through the index."""
    _run(deployed_db, "load", str(_pages(tmp_path / "raw_company_info.csv", extra=False)))
    # statistics taken after the load, as autovacuum would: every page unsynced
    fetch(deployed_db, "ANALYZE bronze.company_info_raw")
    _run(deployed_db, "merge")
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE bronze.company_info_raw SET team_members = team_members || "
            """'[{"name": "Late Joiner", "email": "late@x0.com"}]'::jsonb """
            "WHERE research_uuid = %s",
            (str(uuid.UUID(int=1, version=4)),),
        )
    plans = plans_of(deployed_db, ["SELECT public.run_unified_member_pipeline('{}')"])
    pages = plan_of(plans, "CREATE UNLOGGED TABLE syncpipe_work.sp_member_pages")
    assert "company_info_raw_unsynced_idx" in pages, pages
    assert "Seq Scan" not in pages, pages
    assert (
        one(
            deployed_db, "SELECT counts -> 'pages' FROM unified_merge_logs ORDER BY id DESC LIMIT 1"
        )
        == 1
    )


def test_a_merge_skips_the_vacuum_it_cannot_have_and_still_succeeds(
    deployed_db: str, tmp_path: Path
) -> None:
    """Another vacuum (here a lock of the same strength) holding the pages: the merge does
    not wait for it, says so in its log, and exits 0 with everything committed."""
    _run(deployed_db, "load", str(_pages(tmp_path / "raw_company_info.csv", extra=False)))
    with psycopg.connect(deployed_db) as holder:
        holder.execute("LOCK TABLE bronze.company_info_raw IN SHARE UPDATE EXCLUSIVE MODE")
        proc = _cli(deployed_db, "merge", "--json")
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert json.loads(out)["pages_vacuumed"] is False
    assert "merge.vacuum_skipped" in err and "lock not available" in err, err
    assert one(deployed_db, "SELECT count(*) FROM public.unified_company_member") == PAGES * 3


@pytest.mark.parametrize("language", ["C", "de_DE.UTF-8"])
def test_a_vacuum_the_role_may_not_run_counts_as_skipped(deployed_db: str, language: str) -> None:
    """A role that may not vacuum the pages gets a warning, not an error, in words that
    changed with PostgreSQL 16 ("skipping ... only table or database owner can vacuum it",
    then "permission denied to vacuum ..., skipping it"): either is a skipped vacuum, and so
    is the warning of a server speaking German (it counted as a vacuum done)."""
    from syncpipe.services.merge.service import _Phases, _vacuum_pages

    require_language(deployed_db, language)
    role = f"syncpipe_novacuum_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(deployed_db, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"ALTER ROLE {role} SET lc_messages = '{language}'")
        admin.execute(f"GRANT USAGE ON SCHEMA bronze TO {role}")
    try:
        params = psycopg.conninfo.conninfo_to_dict(deployed_db)
        params["user"] = role
        with psycopg.connect(make_conninfo(**params)) as conn:
            assert _vacuum_pages(conn, 100_000, _Phases(None)) is False
    finally:
        with psycopg.connect(deployed_db, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_ctrl_c_during_the_vacuum_is_a_skipped_vacuum(deployed_db: str, tmp_path: Path) -> None:
    """SIGINT while the pages are vacuumed (after the merge's commit): the statement is
    canceled, the vacuum counts as skipped, and the connection is usable for what follows."""
    from syncpipe.services.merge.service import _Phases, _vacuum_pages

    _run(deployed_db, "load", str(_pages(tmp_path / "raw_company_info.csv", extra=False)))
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET vacuum_cost_delay = 100")  # a few seconds for these 1,500 pages
        conn.execute("SET vacuum_cost_limit = 1")
        conn.commit()
        timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        try:
            assert _vacuum_pages(conn, 100_000, _Phases(None)) is False
        finally:
            timer.cancel()
        assert time.monotonic() - started < 10
        assert conn.execute("SELECT 1").fetchone() == (1,)
