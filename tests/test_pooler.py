"""Every command through a real PgBouncer, in transaction mode (several server connections
handed out round robin, on PgBouncer's own port, not 6543) and in session mode: the same
results as a direct run, locks that hold, nothing left behind for the pooler's next client.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import create_database, drop_database
from tests.helpers import Invoke, fetch, one
from tests.pgbouncer import PgBouncer
from tests.supabase import make_supabase_like

SAMPLE = Path(__file__).resolve().parent.parent / "data"

pytestmark = pytest.mark.skipif(
    not (Path("/usr/sbin/pgbouncer").exists() or os.environ.get("CI")),
    reason="PgBouncer is not installed (.ci/run installs Debian's package)",
)


@pytest.fixture(scope="module", params=["transaction", "session"])
def pooler(request: pytest.FixtureRequest, pg_server: str) -> Iterator[PgBouncer]:
    """A PgBouncer in front of the test server, in each pool mode."""
    mode = str(request.param)
    bouncer = PgBouncer(pg_server, mode)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def transaction_pooler(pg_server: str) -> Iterator[PgBouncer]:
    """A transaction-mode PgBouncer of its own (round robin over 4 server connections)."""
    bouncer = PgBouncer(pg_server, "transaction")
    try:
        yield bouncer
    finally:
        bouncer.stop()


def clusters(dsn: str) -> list[list[str]]:
    """The agents as sets of their source records' own keys (comparable across databases)."""
    rows = fetch(
        dsn,
        """
        SELECT array_agg(CASE WHEN s.source = 'new_agents' THEN s.source_id
                              ELSE m.record_hash END)
        FROM unified_agent_sources s
        LEFT JOIN unified_company_member m
               ON m.id = CASE WHEN s.source = 'company_member' THEN s.source_id::bigint END
        GROUP BY s.agent_id
        """,
    )
    return sorted(sorted(r[0]) for r in rows)


def test_every_command_through_the_pooler(
    invoke: Invoke, pooler: PgBouncer, supabase_db: str, pg_server: str, tmp_path: Path
) -> None:
    """deploy --plan, deploy, deploy --full, load, merge --dry-run, merge, review, verify and
    report all succeed through the pooler, with the results of a direct run."""
    via = pooler.dsn(supabase_db)
    env = {"SYNCPIPE_DATA_DIR": str(SAMPLE)}
    invoke(["deploy", "--plan"], dsn=via)
    invoke(["deploy"], dsn=via)
    invoke(["deploy", "--full"], dsn=via, env=env)
    invoke(["load", str(SAMPLE)], dsn=via)
    dry = invoke(["merge", "--dry-run", "--json"], dsn=via).json()
    assert dry["dry_run"] is True
    invoke(["merge"], dsn=via)
    listed = invoke(["review", "--json"], dsn=via).json()
    item = listed["items"][0]["id"]
    invoke(["review", "reject", str(item), "--by", "pooler-test"], dsn=via)
    invoke(["verify"], dsn=via)
    report = invoke(["report", "--format", "json"], dsn=via).json()
    assert report["agents"]["live"] > 0

    # The same job, directly on the server, gives the same agents.
    direct_name = create_database(pg_server)
    try:
        from tests.conftest import dsn_for

        direct = dsn_for(pg_server, direct_name)
        make_supabase_like(direct)
        invoke(["deploy", "--full"], dsn=direct, env=env)
        assert clusters(direct) == clusters(supabase_db)
        for query in (
            "SELECT count(*) FROM new_unified_agents WHERE merged_into IS NULL",
            "SELECT count(*) FROM unified_agent_sources",
            "SELECT count(*) FROM merge_review_queue",
        ):
            assert one(direct, query) == one(supabase_db, query), query
    finally:
        drop_database(pg_server, direct_name)


def test_dry_runs_through_round_robin_see_no_phantom_lock(
    invoke: Invoke, transaction_pooler: PgBouncer, deployed_db: str
) -> None:
    """Regression: a session lock on one server connection and the function's transaction lock
    on another made 1 dry run in 4 fail with "another merge is running", more under traffic."""
    via = transaction_pooler.dsn(deployed_db)
    invoke(["load", str(SAMPLE)], dsn=via)
    stop = threading.Event()

    def traffic() -> None:
        with psycopg.connect(via, autocommit=True, prepare_threshold=None) as conn:
            while not stop.is_set():
                conn.execute("SELECT pg_sleep(0.005)")

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(6):
            invoke(["merge", "--dry-run"], dsn=via)
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_two_merges_through_the_pooler_serialize(
    transaction_pooler: PgBouncer, deployed_db: str
) -> None:
    """Two merges at once: the second waits for the first's transaction lock, then finds
    nothing new; with a short lock timeout it gives up with exit 3 and the clear message."""
    via = transaction_pooler.dsn(deployed_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.hold() RETURNS void LANGUAGE sql "
            "SET search_path = pg_catalog AS $$ SELECT pg_sleep(3) $$;"
            "REVOKE EXECUTE ON FUNCTION public.hold() FROM PUBLIC, anon, authenticated"
        )
    base = {**os.environ, "SYNCPIPE_DATABASE_URL": via}
    subprocess.run(
        [sys.executable, "-m", "syncpipe", "load", str(SAMPLE)], env=base, check=True,
        capture_output=True,
    )  # fmt: skip
    first = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "merge"],
        env={**base, "SYNCPIPE_PIPELINE_STEPS": '["public.hold"]'},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not fetch(
        deployed_db,
        "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%%\"hold\"()%%' AND state = 'active' "
        "AND pid <> pg_backend_pid() AND datname = current_database()",
    ):
        assert time.monotonic() < deadline and first.poll() is None, first.stderr
        time.sleep(0.05)
    impatient = subprocess.run(
        [sys.executable, "-m", "syncpipe", "merge"],
        env={**base, "SYNCPIPE_LOCK_TIMEOUT": "0.5"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert impatient.returncode == 3, impatient.stderr
    assert "Another syncpipe merge (or review decision) is running" in impatient.stderr
    assert "SYNCPIPE_LOCK_TIMEOUT" in impatient.stderr
    patient = subprocess.run(
        [sys.executable, "-m", "syncpipe", "merge", "--json"],
        env=base,
        capture_output=True,
        text=True,
        check=False,
    )
    _, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    assert patient.returncode == 0, patient.stderr
    runs = fetch(
        deployed_db,
        "SELECT status, total_processed FROM unified_merge_logs WHERE run_kind = 'merge' "
        "ORDER BY id",
    )
    # the impatient run's row says it failed; the other two succeeded, the second with no work
    statuses = [s for s, _ in runs]
    assert statuses.count("success") == 2 and statuses.count("failed") == 1, runs
    assert runs[-1] == ("success", 0) or ("success", 0) in runs


def test_nothing_syncpipe_sets_is_seen_by_the_next_client(
    invoke: Invoke, transaction_pooler: PgBouncer, deployed_db: str
) -> None:
    """Regression: a session-level statement_timeout stayed on pooled server connections for
    the next clients. Every setting syncpipe makes lasts one transaction."""
    via = transaction_pooler.dsn(deployed_db)
    env = {"SYNCPIPE_STATEMENT_TIMEOUT": "7", "SYNCPIPE_MERGE_WORK_MEM": "99MB"}
    invoke(["load", str(SAMPLE)], dsn=via, env=env)
    invoke(["merge"], dsn=via, env=env)
    invoke(["verify"], dsn=via, env=env)
    invoke(["review"], dsn=via, env=env)
    invoke(["report", "--format", "json"], dsn=via, env=env)
    settings = (
        "statement_timeout",
        "work_mem",
        "search_path",
        "role",
        "client_connection_check_interval",
        "pg_trgm.similarity_threshold",
        "jit",
        "tcp_keepalives_idle",
        "tcp_user_timeout",
    )
    query = "SELECT " + ", ".join(f"current_setting('{s}', true)" for s in settings)
    with psycopg.connect(deployed_db) as direct:
        expected = direct.execute(query).fetchone()
    # Four clients in open transactions at once hold all four server connections.
    clients = [psycopg.connect(via, prepare_threshold=None) for _ in range(4)]
    try:
        seen = {c.execute(query).fetchone() for c in clients}
        backends = {c.execute("SELECT pg_backend_pid()").fetchone() for c in clients}
    finally:
        for c in clients:
            c.close()
    assert len(backends) == 4
    assert seen == {expected}, (settings, seen, expected)


def test_a_connection_dropped_mid_merge_loses_nothing(
    invoke: Invoke, transaction_pooler: PgBouncer, deployed_db: str
) -> None:
    """The server ends the merge's connection behind the pooler: exit 3 with one sentence,
    the previous state intact, and a rerun completes."""
    via = transaction_pooler.dsn(deployed_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.hold() RETURNS void LANGUAGE sql "
            "SET search_path = pg_catalog AS $$ SELECT pg_sleep(20) $$;"
            "REVOKE EXECUTE ON FUNCTION public.hold() FROM PUBLIC, anon, authenticated"
        )
    invoke(["load", str(SAMPLE)], dsn=via)
    killer_done = threading.Event()

    def kill_when_holding() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if fetch(
                deployed_db,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE '%%\"hold\"()%%' AND state = 'active' "
                "AND pid <> pg_backend_pid() AND datname = current_database()",
            ):
                break
            time.sleep(0.05)
        killer_done.set()

    killer = threading.Thread(target=kill_when_holding)
    killer.start()
    result = invoke(["merge"], dsn=via, code=3, env={"SYNCPIPE_PIPELINE_STEPS": '["public.hold"]'})
    killer.join()
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 0
    assert one(deployed_db, "SELECT count(*) FROM unified_company_member") == 0
    invoke(["merge"], dsn=via)
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") > 0
