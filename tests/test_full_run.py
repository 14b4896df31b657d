"""``syncpipe deploy --full`` on the sample data in data/: the seed's whole flow, its report,
its logs, and what happens when a step fails or the run is killed half-way."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.helpers import Invoke, fetch, one

SAMPLE = Path(__file__).resolve().parent.parent / "data"


def csv_rows(path: Path) -> int:
    """Data rows of a CSV file (quoted newlines counted right)."""
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def agents_by_name(dsn: str) -> dict[str, list[tuple[int, bool, int, list[str]]]]:
    """Live master agents of the hand-written sample (not the synthetic teams), by name:
    (confidence, needs_review, source records, sorted match rules)."""
    rows = fetch(
        dsn,
        """
        SELECT a.full_name, a.confidence_score, a.needs_review, count(*),
               array_agg(DISTINCT s.match_rule ORDER BY s.match_rule)
        FROM public.new_unified_agents a
        JOIN public.unified_agent_sources s USING (agent_id)
        WHERE a.merged_into IS NULL
        GROUP BY a.agent_id
        HAVING bool_and(s.team_id NOT LIKE 'team-%%')
        """,
    )
    out: dict[str, list[tuple[int, bool, int, list[str]]]] = {}
    for name, score, review, n, rules in rows:
        out.setdefault(name or "", []).append((score, review, n, rules))
    return out


def test_full_run_on_the_sample_data(invoke: Invoke, fresh_db: str) -> None:
    result = invoke(
        ["deploy", "--full", "--json"], dsn=fresh_db, env={"SYNCPIPE_DATA_DIR": str(SAMPLE)}
    )
    report = result.json()
    assert report["kind"] == "full" and report["status"] == "success"
    assert [s["name"] for s in report["steps"]] == ["deploy", "verify", "load", "merge", "report"]
    assert all(s["status"] == "success" and s["duration_s"] >= 0 for s in report["steps"])

    agents = agents_by_name(fresh_db)
    # one agent per person, merged on the evidence the sample was written for
    assert agents["Maria Garcia"] == [(100, False, 2, ["email"])]  # messy case and spaces
    assert agents["José Núñez"] == [(100, False, 2, ["email"])]  # "JOSE NUNEZ"
    assert agents["Robert Johnson"] == [(90, False, 2, ["phone"])]  # "Bob Johnson"
    assert agents["Wei Chen"] == [(90, False, 2, ["phone"])]  # "Chen, Wei", ext. dropped
    assert agents["Ana Lucía Fernández"] == [(90, False, 2, ["phone"])]  # accents
    assert agents["David Lee"] == [(100, False, 2, ["email"])]  # moved team, same email
    assert agents["Karen White"] == [(100, False, 3, ["email"])]  # a feed duplicate too
    # the info@ mailbox and office line are shared: evidence only between holders whose
    # names fit (Emily Park's two records), never between different people
    assert agents["Emily Park"] == [(100, False, 2, ["email"])]
    assert agents["Tom Wilson"] == [(100, False, 1, ["single"])]
    # a generational suffix keeps father and son apart despite the shared office line
    assert agents["John Davis Jr."] == [(100, False, 1, ["single"])]
    assert agents["John Davis Sr."] == [(100, False, 1, ["single"])]
    # namesakes on two teams with their own contacts stay two people; "Mike" joins his own
    assert sorted(agents["Michael Smith"]) == [
        (100, False, 1, ["single"]),
        (100, False, 2, ["email"]),
    ]
    # a one-letter typo with no shared contact is doubtful: both wait for a person
    assert agents["Jennifer Thompson"] == [(100, True, 1, ["single"])]
    assert agents["Jennifer Thompsen"] == [(100, True, 1, ["single"])]
    assert agents["Sarah O'Brien"] == [(100, False, 1, ["single"])]  # team page only
    review = fetch(
        fresh_db,
        "SELECT rule, confidence, evidence -> 'a' ->> 'name', evidence -> 'b' ->> 'name' "
        "FROM merge_review_queue WHERE status = 'open' AND evidence ->> 'team_id' = 'harbor-realty'",
    )
    assert review == [("fuzzy_name", 60, "Jennifer Thompson", "Jennifer Thompsen")]
    # the invalid email and the too-short phone of Luis Ortega were dropped, the good one kept
    assert fetch(
        fresh_db,
        "SELECT emails, phone_numbers FROM new_unified_agents WHERE full_name = 'Luis Ortega'",
    ) == [(["lortega@summithomes.com"], [])]

    # the run report on disk is the same document, with per-file and per-rule figures
    on_disk = json.loads(Path("logs/deployment_report.json").read_text())
    assert on_disk["report_version"] == 1 and on_disk["kind"] == "full"
    load = next(s for s in on_disk["steps"] if s["name"] == "load")["details"]
    assert {Path(f["file"]).name for f in load["files"]} == {
        "new_agents.csv",
        "new_agents_synthetic.csv",
        "raw_company_info.csv",
        "raw_company_info_synthetic.csv",
    }
    assert all(f["rejected"] == 0 for f in load["files"])
    merge = next(s for s in on_disk["steps"] if s["name"] == "merge")["details"]
    assert merge["merge"]["links"]["email"] > 0 and merge["merge"]["review_pairs"] >= 1
    assert on_disk["database"]["pool"]["peak_in_use"] >= 1
    assert Path("logs/report.html").stat().st_size > 100_000  # plotly.js is inline
    # the text log: TIMESTAMP | LEVEL | MODULE | MESSAGE
    lines = Path("logs/syncpipe.log").read_text().splitlines()
    assert lines and all(
        re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z? \| [A-Z]+ +\| [\w.]+ +\| ", line) for line in lines
    ), lines[:3]

    # a second run changes nothing and duplicates nothing
    before = one(fresh_db, "SELECT count(*) FROM new_unified_agents")
    queued = one(fresh_db, "SELECT count(*) FROM merge_review_queue")
    again = invoke(
        ["deploy", "--full", "--json"], dsn=fresh_db, env={"SYNCPIPE_DATA_DIR": str(SAMPLE)}
    ).json()
    assert again["status"] == "success"
    assert one(fresh_db, "SELECT count(*) FROM new_unified_agents") == before
    assert one(fresh_db, "SELECT count(*) FROM merge_review_queue") == queued
    load_again = next(s for s in again["steps"] if s["name"] == "load")["details"]
    assert {f["status"] for f in load_again["files"]} == {"skipped"}


def test_rejected_rows_stop_the_run_and_are_recorded(
    invoke: Invoke, fresh_db: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE / "new_agents.csv", data)
    with (data / "new_agents.csv").open("a", encoding="utf-8") as fh:
        fh.write('not-a-uuid,Broken Row,"[]","[]",harbor-realty,\n')
    result = invoke(
        ["deploy", "--full"], dsn=fresh_db, code=1, env={"SYNCPIPE_DATA_DIR": str(data)}
    )
    assert "stopped at load" in result.stderr and "1 row(s) rejected" in result.stderr
    report = json.loads(Path("logs/deployment_report.json").read_text())
    assert report["status"] == "failed"
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("deploy", "success"),
        ("verify", "success"),
        ("load", "failed"),
    ]
    (file,) = report["steps"][2]["details"]["files"]
    assert file["rejected"] == 1 and file["inserted"] == 15
    # the good rows are in; the merge did not run
    assert one(fresh_db, "SELECT count(*) FROM new_agents") == 15
    assert one(fresh_db, "SELECT count(*) FROM new_unified_agents") == 0


def test_missing_data_folder_names_the_setting(invoke: Invoke, fresh_db: str) -> None:
    result = invoke(
        ["deploy", "--full"], dsn=fresh_db, code=1, env={"SYNCPIPE_DATA_DIR": "no/such/folder"}
    )
    assert "no/such/folder" in result.stderr and "SYNCPIPE_DATA_DIR" in result.stderr


def test_full_run_killed_half_way_completes_when_run_again(deployed_db: str) -> None:
    """SIGKILL during the merge: nothing half-written; the next run finishes the job and the
    master table equals that of an uninterrupted run."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.slow_step() RETURNS void LANGUAGE sql "
            "SET search_path = pg_catalog AS $$ SELECT pg_sleep(60) $$;"
            # (not for the API: verify, the run's second step, fails on any function the API
            # roles may execute)
            "REVOKE EXECUTE ON FUNCTION public.slow_step() FROM PUBLIC, anon, authenticated"
        )
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db, "SYNCPIPE_DATA_DIR": str(SAMPLE)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "deploy", "--full"],
        env={**env, "SYNCPIPE_PIPELINE_STEPS": '["public.slow_step"]'},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if fetch(
            deployed_db,
            # (the step's call itself, not the check that the function exists)
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%%\"slow_step\"()%%' "
            "AND pid <> pg_backend_pid() AND datname = current_database() AND state = 'active'",
        ):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("the run never reached the merge")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the server notices the dead client; the merge transaction is rolled back
    deadline = time.monotonic() + 30
    while fetch(
        deployed_db,
        "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%%slow_step%%' AND pid <> pg_backend_pid() AND datname = current_database()",
    ):
        fetch(
            deployed_db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE '%%slow_step%%' AND pid <> pg_backend_pid() AND datname = current_database()",
        )
        assert time.monotonic() < deadline
        time.sleep(0.1)
    feed_rows = sum(csv_rows(f) for f in SAMPLE.glob("new_agents*.csv"))
    assert one(deployed_db, "SELECT count(*) FROM new_agents") == feed_rows  # load committed
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 0

    rerun = subprocess.run(
        [sys.executable, "-m", "syncpipe", "deploy", "--full", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["status"] == "success"
    assert one(deployed_db, "SELECT count(*) FROM new_agents") == feed_rows
    # every source record is placed exactly once
    assert one(
        deployed_db,
        "SELECT count(*) = count(DISTINCT (source, source_id)) FROM unified_agent_sources",
    )
    placed = one(deployed_db, "SELECT count(*) FROM unified_agent_sources")
    assert placed == one(deployed_db, "SELECT count(*) FROM new_agents") + one(
        deployed_db, "SELECT count(*) FROM unified_company_member"
    )
    statuses = fetch(
        deployed_db, "SELECT status, error_message FROM unified_merge_logs ORDER BY id"
    )
    assert statuses[0][0] == "failed" and "interrupted" in statuses[0][1]
    assert statuses[-1][0] == "success"
