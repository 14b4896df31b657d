"""Batched merges and lost clients (issue 15 item 9): every batch leaves its row in
unified_merge_logs, a failed one included, and a merge whose client is killed stops on the
server within seconds, so the next run does not wait for an orphan holding the lock.
Real PostgreSQL, the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.agents import Sources
from tests.helpers import Invoke, fetch, one

BATCH = {"SYNCPIPE_MERGE_BATCH_RECORDS": "40"}


def _hundred_agents(folder: Path) -> None:
    src = Sources()
    for i in range(100):
        src.agent(f"Given{i:03d} Family{i:03d}", emails=[f"p{i}@mail.com"], team=f"t{i % 7}")
    src.write(folder)


def test_batched_run_logs_every_batch(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    _hundred_agents(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    out = invoke(["merge", "--json"], dsn=deployed_db, env=BATCH).json()
    assert out["batches"] == 3  # 40 + 40 + 20 records
    logs = fetch(deployed_db, "SELECT run_kind, status FROM unified_merge_logs ORDER BY id")
    assert logs == [("member_pipeline", "success")] + [("merge", "success")] * 3
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 100


def test_failed_batch_leaves_a_failed_row_and_the_committed_batches(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The third batch fails (a trigger refuses the 81st agent): the first two stay committed
    and logged as successes, the third is logged failed with the reason, and a rerun without
    the trigger finishes the work."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            """
            CREATE FUNCTION public.refuse_81st() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF (SELECT count(*) FROM public.new_unified_agents) > 80 THEN
                    RAISE EXCEPTION 'no room for agent %', NEW.agent_id;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_81st AFTER INSERT ON public.new_unified_agents
                FOR EACH ROW EXECUTE FUNCTION public.refuse_81st();
            """
        )
    _hundred_agents(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    failed = invoke(["merge"], dsn=deployed_db, env=BATCH, code=1)
    assert "no room for agent" in failed.stderr
    logs = fetch(
        deployed_db,
        "SELECT run_kind, status, coalesce(error_message, '') FROM unified_merge_logs ORDER BY id",
    )
    assert [row[:2] for row in logs] == [
        ("member_pipeline", "success"),
        ("merge", "success"),
        ("merge", "success"),
        ("merge", "failed"),
    ]
    assert "no room for agent" in logs[-1][2]
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 80
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse_81st ON public.new_unified_agents")
    invoke(["merge"], dsn=deployed_db, env=BATCH)
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 100


def test_killed_client_stops_the_merge_on_the_server(deployed_db: str, tmp_path: Path) -> None:
    """SIGKILL to the client while the merge runs on the server: the server ends the merge
    within seconds (client_connection_check_interval), nothing is written, and the next merge
    does not wait for the orphan's lock."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.slow_step() RETURNS void LANGUAGE sql AS "
            "$$ SELECT pg_sleep(120) $$"
        )
    _hundred_agents(tmp_path / "data")
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db}
    subprocess.run(
        [sys.executable, "-m", "syncpipe", "load", str(tmp_path / "data")], env=env, check=True
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "merge"],
        env={**env, "SYNCPIPE_PIPELINE_STEPS": '["public.slow_step"]'},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    find = (
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%%\"slow_step\"()%%' "
        "AND pid <> pg_backend_pid() AND datname = current_database()"
    )
    deadline = time.monotonic() + 60
    while not fetch(deployed_db, find) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fetch(deployed_db, find), "the merge never reached its custom step"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.monotonic()
    while fetch(deployed_db, find) and time.monotonic() - killed_at < 30:
        time.sleep(0.2)
    assert not fetch(deployed_db, find), "the orphaned merge still runs 30 s after its client"
    assert time.monotonic() - killed_at < 10
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 0
    rerun = subprocess.run(
        [sys.executable, "-m", "syncpipe", "merge"],
        env={**env, "SYNCPIPE_LOCK_TIMEOUT": "5"},
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 100
    statuses = fetch(deployed_db, "SELECT status FROM unified_merge_logs ORDER BY id")
    assert statuses[:2] == [("failed",), ("failed",)]  # the orphan's rows, settled
