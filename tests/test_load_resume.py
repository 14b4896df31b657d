"""A load killed at any point resumes from its last committed batch: nothing lost, nothing
duplicated, rejects reported once, and no stray file left behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.helpers import fetch, one
from tests.test_load import HEADER, agent_line

ROWS = 60_000
BATCH = "2000"
#: bad rows (line -> content) spread over the file, and a key repeated far apart
BAD = {
    1_002: 'not-a-uuid,Bad Uuid,"[]","[]",t,"{}"',
    20_002: '11111111-1111-4111-8111-111111111111,Bad Json,"[""a@b.com"",]","[]",t,"{}"',
    45_002: '22222222-2222-4222-8222-222222222222,Numbers,"[]","[5551234567]",t,"{}"',
}
DUPLICATE_LINE, DUPLICATE_OF = 50_002, 30  # line 50,002 repeats the key of row 30 (line 32)

CHECKSUM = (
    "SELECT md5(string_agg(concat_ws('|', supabase_uuid, full_name, email_clean, phone_digits, "
    "team_id, social_links), E'\\n' ORDER BY supabase_uuid)) FROM public.new_agents"
)


def _file(folder: Path) -> Path:
    path = folder / "new_agents_resume.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEADER + "\n")
        for line in range(2, ROWS + 2):
            if line in BAD:
                fh.write(BAD[line] + "\n")
            elif line == DUPLICATE_LINE:
                fh.write(agent_line(DUPLICATE_OF, name="Later Copy") + "\n")
            else:
                fh.write(agent_line(line - 2) + "\n")
    return path


def _load(dsn: str, path: Path, logs: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "SYNCPIPE_DATABASE_URL": dsn,
        "SYNCPIPE_LOAD_BATCH_ROWS": BATCH,
        "SYNCPIPE_LOGS_DIR": str(logs),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "load", str(path), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _batches(dsn: str) -> int:
    return int(one(dsn, "SELECT count(*) FROM syncpipe.load_batches"))


def _pace(dsn: str) -> None:
    """Every statement that writes public.new_agents takes 50 ms longer (a statement
    trigger that sleeps on the server): a 60,000-row load on a quiet machine is over in a
    third of a second, which leaves the poll (a connection per look) little margin to
    interrupt it mid-file."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.test_pace() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END$$"
        )
        conn.execute(
            "CREATE TRIGGER test_pace AFTER INSERT OR UPDATE ON public.new_agents "
            "FOR EACH STATEMENT EXECUTE FUNCTION public.test_pace()"
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _gone(dsn: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not fetch(
            dsn,
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'syncpipe' AND pid <> pg_backend_pid()",
        ):
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def clean_checksum(
    pg_server: str, deployed_template: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, int]:
    """The table after one clean, uninterrupted load of the file."""
    from tests.conftest import create_database, drop_database

    name = create_database(pg_server, template=deployed_template)
    dsn = make_conninfo(pg_server, dbname=name)
    folder = tmp_path_factory.mktemp("clean")
    try:
        proc = _load(dsn, _file(folder), folder / "logs")
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        return str(one(dsn, CHECKSUM)), int(one(dsn, "SELECT count(*) FROM public.new_agents"))
    finally:
        drop_database(pg_server, name)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0, 1, 9, 20])
def test_killed_load_resumes_from_its_last_committed_batch(
    deployed_db: str, tmp_path: Path, clean_checksum: tuple[str, int], kill_after: int
) -> None:
    """SIGKILL once ``kill_after`` batches have committed (0: during the first COPY); the
    ledger says how far the file got; the rerun resumes there and the table equals a clean
    load's, row for row; the rejects are listed once; no temporary file is left."""
    path = _file(tmp_path)
    logs = tmp_path / "logs"
    _pace(deployed_db)
    proc = _load(deployed_db, path, logs)
    deadline = time.monotonic() + 120
    if kill_after == 0:
        while not fetch(
            deployed_db,
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'COPY%%' AND pid <> pg_backend_pid()",
        ):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
    else:
        while _batches(deployed_db) < kill_after:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    _gone(deployed_db)
    committed = _batches(deployed_db)
    assert committed >= kill_after
    status = one(deployed_db, "SELECT status FROM syncpipe.load_files")
    assert status == "loading"  # the ledger says the file is not done, and how far it got
    rows_so_far = one(deployed_db, "SELECT coalesce(sum(rows_read), 0) FROM syncpipe.load_batches")
    assert rows_so_far <= ROWS

    rerun = _load(deployed_db, path, logs)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 1, err  # the file has rejects

    f = json.loads(out)["files"][0]
    assert f["resumed_batches"] == committed
    assert f["status"] == "loaded_with_rejects"
    assert f["rows_read"] == ROWS
    assert f["rejected"] == len(BAD) + 1
    assert f["inserted"] == ROWS - len(BAD) - 1
    checksum, count = clean_checksum
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == count
    assert one(deployed_db, CHECKSUM) == checksum
    with Path(f["reject_file"]).open(encoding="utf-8", newline="") as fh:
        rejects = list(csv.DictReader(fh))
    assert sorted(int(r["line"]) for r in rejects) == sorted([*BAD, DUPLICATE_LINE])
    assert [p.name for p in (logs / "rejects").iterdir()] == [Path(f["reject_file"]).name]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or "partial" in p.name]
    key = str(uuid.UUID(int=DUPLICATE_OF + 1, version=4))
    assert (
        one(deployed_db, "SELECT full_name FROM public.new_agents WHERE supabase_uuid = %s", (key,))
        == f"Agent Number{DUPLICATE_OF}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(
    deployed_db: str, tmp_path: Path, clean_checksum: tuple[str, int], jobs: str
) -> None:
    """SIGINT (Ctrl-C) in the middle of the file: the load exits 130 with one clear sentence
    (no traceback), its committed batches stay in the ledger, no reject file or partial file
    is left, and the rerun resumes to a table identical to a clean load's."""
    path = _file(tmp_path)
    logs = tmp_path / "logs"
    _pace(deployed_db)
    env = {
        **os.environ,
        "SYNCPIPE_DATABASE_URL": deployed_db,
        "SYNCPIPE_LOAD_BATCH_ROWS": BATCH,
        "SYNCPIPE_LOGS_DIR": str(logs),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "load", str(path), "--json", "--jobs", jobs],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # (Ctrl-C as in a terminal: a suite started in the background, `make test &`, runs
        # with SIGINT ignored, which the child would inherit, and Python then keeps it so)
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    while _batches(deployed_db) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == ""
    assert "Load interrupted (Ctrl-C)" in err and "run the same load again to resume" in err
    assert "Traceback" not in err
    _gone(deployed_db)
    committed = _batches(deployed_db)
    assert 3 <= committed < ROWS // int(BATCH)
    assert one(deployed_db, "SELECT status FROM syncpipe.load_files") == "loading"
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == one(
        deployed_db, "SELECT sum(inserted) FROM syncpipe.load_batches"
    )
    assert not (logs / "rejects").exists() or not list((logs / "rejects").iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [path.name]

    rerun = _load(deployed_db, path, logs)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 1, err  # the file has rejects
    f = json.loads(out)["files"][0]
    assert f["resumed_batches"] == committed
    assert (f["rows_read"], f["rejected"]) == (ROWS, len(BAD) + 1)
    checksum, count = clean_checksum
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == count
    assert one(deployed_db, CHECKSUM) == checksum
    assert [p.name for p in (logs / "rejects").iterdir()] == [Path(f["reject_file"]).name]


def test_a_resumed_file_says_its_counts_are_the_whole_files() -> None:
    """The summary of a resumed load notes that the counts include the batches of the run
    that was cut short, and shows no rate (the whole file's rows over this run's time was one
    many times too high)."""
    from io import StringIO

    from rich.console import Console

    from syncpipe.cli.render import load_table
    from syncpipe.services.load.driver import FileResult
    from syncpipe.services.load.loader import LoadResult

    def shown(resumed: int) -> str:
        out = StringIO()
        result = LoadResult(duration_s=0.5)
        result.files.append(
            FileResult(
                path="agents.csv",
                table="new_agents",
                status="loaded",
                rows_read=81_411,
                inserted=81_411,
                resumed_batches=resumed,
                duration_s=0.5,
            )
        )
        load_table(Console(file=out, width=200), result)
        return out.getvalue()

    fresh, resumed = shown(0), shown(172)
    assert "162,822" in fresh and "resumed" not in fresh
    assert "162,822" not in resumed
    assert "resumed after the 172 batch(es) an earlier run committed" in resumed
