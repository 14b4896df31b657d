"""A load and a merge at the same time lose nothing: the member pipeline marks synced only the
page versions it read, so a page a load changes meanwhile is taken up by the next merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.helpers import fetch, one

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
