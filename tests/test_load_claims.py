"""One load per table at a time, across processes: a second load of a table waits for the
first (or gives up after the lock timeout naming it); a claim whose load stopped blocks no one;
a load whose claim was taken over stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import Invoke, fetch, one
from tests.test_load import HEADER, agent_line
from tests.test_load_resume import BATCH, ROWS, _file, _pace


def _slow(dsn: str, seconds: float = 0.3) -> None:
    """Every statement that writes public.new_agents takes ``seconds`` longer: a load of the
    60,000 rows (30 batches) takes 15 times that at least, however quick the machine."""
    fetch(
        dsn,
        "CREATE FUNCTION public.test_slow() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END$$",
    )
    fetch(
        dsn,
        "CREATE TRIGGER test_slow AFTER INSERT OR UPDATE ON public.new_agents "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.test_slow()",
    )


def _start(dsn: str, path: Path, logs: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "load", str(path), "--json"],
        env={
            **os.environ,
            "SYNCPIPE_DATABASE_URL": dsn,
            "SYNCPIPE_LOAD_BATCH_ROWS": BATCH,
            "SYNCPIPE_LOGS_DIR": str(logs),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _claimed(dsn: str, proc: subprocess.Popen[str], batches: int = 1) -> None:
    """Wait until ``proc`` holds its claim and has committed ``batches`` batches."""
    deadline = time.monotonic() + 60
    while (
        one(dsn, "SELECT count(*) FROM syncpipe.load_files WHERE holder_token IS NOT NULL") == 0
        or one(dsn, "SELECT count(*) FROM syncpipe.load_batches") < batches
    ):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _small_file(folder: Path, name: str, rows: int = 300) -> Path:
    path = folder / name
    path.write_text("\n".join([HEADER, *(agent_line(10**6 + i) for i in range(rows))]) + "\n")
    return path


@pytest.mark.slow
def test_a_second_load_of_the_same_file_waits_for_the_first(
    deployed_db: str, tmp_path: Path
) -> None:
    """Two loads of one file at once: the second waits (saying so), then finds the file loaded
    and skips it. Before, it resumed the first one's unfinished ledger row and both fought
    over every key: a 245k-row file took 518 s instead of 5."""
    path = _file(tmp_path)
    # (4.5 s of load at least: at 50 ms a batch the first load could end before the second
    # had started, on a busy machine, and the second then had nothing to wait for)
    _slow(deployed_db)
    first = _start(deployed_db, path, tmp_path / "logs")
    _claimed(deployed_db, first)
    second = _start(deployed_db, path, tmp_path / "logs", SYNCPIPE_LOCK_TIMEOUT="120")
    out2, err2 = second.communicate(timeout=180)
    out1, err1 = first.communicate(timeout=180)
    assert first.returncode == 1, err1  # (the file has rejects)
    assert json.loads(out1)["files"][0]["resumed_batches"] == 0
    assert second.returncode == 1, err2  # its rejects reported again, nothing loaded
    again = json.loads(out2)["files"][0]
    assert (again["status"], again["inserted"], again["rows_read"]) == (
        "loaded_with_rejects",
        0,
        0,
    )
    assert "load.waiting" in err2 and "since" in err2
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.load_files") == 1
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == ROWS - 4
    assert one(deployed_db, "SELECT holder_token FROM syncpipe.load_files") is None


@pytest.mark.slow
def test_a_load_of_a_busy_table_gives_up_after_the_lock_timeout(
    deployed_db: str, tmp_path: Path
) -> None:
    """Another file into the same table while a load runs: exit 3 after SYNCPIPE_LOCK_TIMEOUT,
    one sentence naming the table, the other load's file, process and host, and the setting;
    nothing of the second file written, the first load unharmed."""
    path = _file(tmp_path)
    other = _small_file(tmp_path, "new_agents_more.csv")
    _slow(deployed_db)
    first = _start(deployed_db, path, tmp_path / "logs")
    _claimed(deployed_db, first)
    t0 = time.monotonic()
    second = _start(deployed_db, other, tmp_path / "logs", SYNCPIPE_LOCK_TIMEOUT="1")
    _, err = second.communicate(timeout=60)
    waited = time.monotonic() - t0
    assert second.returncode == 3, err
    sentence = err.strip().splitlines()[-1]
    assert sentence.startswith("Error: public.new_agents is being loaded by another syncpipe")
    assert f"new_agents_resume.csv, pid {first.pid} on " in sentence
    assert "SYNCPIPE_LOCK_TIMEOUT" in sentence and "Traceback" not in err
    assert waited < 30
    assert first.poll() is None  # the first load goes on
    first.communicate(timeout=300)
    assert first.returncode == 1
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.load_files") == 1
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == ROWS - 4


def _claim(
    dsn: str,
    path: Path,
    *,
    quiet_s: int,
    pid: int = 4242,
    host: str = "far-host",
    place: str = "far-host|boot|ns",
    allows_s: float = 180.0,
    pid_start: int | None = None,
) -> None:
    """A 'loading' row of ``path`` claimed by another load: by default on another machine
    (``place``), last heard from ``quiet_s`` seconds ago, allowing itself ``allows_s``."""
    size, mtime = (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else (1, 1)
    fetch(
        dsn,
        "INSERT INTO syncpipe.load_files (file_name, file_path, table_name, size_bytes, mtime_ns,"
        " body_offset, started_at, duration_ms, status, env, encoding, holder_token, holder_pid,"
        " holder_host, holder_place, holder_silent_s, holder_pid_start, holder_since,"
        " heartbeat_at)"
        " VALUES (%s, %s, 'public.new_agents', %s, %s, %s, now() - interval '1 hour', 0,"
        " 'loading', 'dev', 'utf-8', 'far-token', %s, %s, %s, %s, %s, now() - interval '1 hour',"
        " now() - make_interval(secs => %s))",
        (path.name, str(path.resolve()), size, mtime, len(HEADER) + 1, pid, host, place,
         allows_s, pid_start, quiet_s),
    )  # fmt: skip


def _here() -> str:
    """This machine's place, as syncpipe's claims name it."""
    from syncpipe.services.load.claim import this_load

    return this_load(30).place


FAST = {"SYNCPIPE_LOCK_TIMEOUT": "0.3"}


def test_a_claim_from_another_machine_blocks_until_it_falls_silent(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A claim held on another host (whose process this host cannot see) blocks a load of its
    table while it is heard from: exit 3 naming it. Once silent for longer than its holder
    allows itself, it is taken as stopped and the load goes on."""
    path = _small_file(tmp_path, "new_agents_far.csv")
    _claim(deployed_db, tmp_path / "elsewhere.csv", quiet_s=100, allows_s=120)
    res = invoke(["load", str(path)], code=3, dsn=deployed_db, env=FAST)
    assert "elsewhere.csv, pid 4242 on far-host" in res.stderr
    assert "last heard from 100 s ago" in res.stderr
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 0

    # (its own allowance decides, not the waiting load's lock timeout)
    invoke(["load", str(path)], code=3, dsn=deployed_db, env={"SYNCPIPE_LOCK_TIMEOUT": "0"})
    fetch(deployed_db, "UPDATE syncpipe.load_files SET heartbeat_at = now() - interval '3 min'")
    invoke(["load", str(path)], dsn=deployed_db, env=FAST)
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 300


def test_a_folder_load_reports_every_table_when_one_is_busy(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A folder whose feed table another load holds: the pages load, the feed's first file
    fails naming the other load, its second is not tried (it would wait as long again), the
    --json result lists all three, and the exit code is 3 with the same sentence. (The load
    stopped at the busy table with exit 3 and printed nothing.)"""
    folder = tmp_path / "in"
    folder.mkdir()
    _small_file(folder, "new_agents_a.csv")
    _small_file(folder, "new_agents_b.csv")
    pages = (Path(__file__).parent.parent / "data" / "raw_company_info.csv").read_text()
    (folder / "raw_company_info.csv").write_text(pages)
    _claim(deployed_db, tmp_path / "elsewhere.csv", quiet_s=5, allows_s=120)
    started = time.monotonic()
    res = invoke(
        ["load", str(folder), "--json", "--jobs", "2"],
        code=3,
        dsn=deployed_db,
        env={"SYNCPIPE_LOCK_TIMEOUT": "1"},
    )
    assert time.monotonic() - started < 20
    files = {Path(f["file"]).name: f for f in res.json()["files"]}
    assert files["raw_company_info.csv"]["status"] == "loaded"
    first, second = files["new_agents_a.csv"], files["new_agents_b.csv"]
    assert (first["status"], second["status"]) == ("failed", "failed")
    assert "elsewhere.csv, pid 4242 on far-host" in first["message"]
    assert second["message"].startswith("not tried: new_agents_a.csv gave up waiting")
    assert "elsewhere.csv, pid 4242 on far-host" in res.stderr.strip().splitlines()[-1]
    assert one(deployed_db, "SELECT count(*) FROM bronze.company_info_raw") > 0
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 0


def test_a_full_run_on_a_busy_table_stops_at_the_load_with_exit_3(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """`deploy --full` whose feed table another load holds: exit 3 (a lock not had in time),
    the report's load step failed with every file in it, the merge not run."""
    data = tmp_path / "data"
    data.mkdir()
    _small_file(data, "new_agents.csv")
    _claim(deployed_db, tmp_path / "elsewhere.csv", quiet_s=5, allows_s=120)
    res = invoke(
        ["deploy", "--full"],
        code=3,
        dsn=deployed_db,
        env={"SYNCPIPE_LOCK_TIMEOUT": "1", "SYNCPIPE_DATA_DIR": str(data)},
    )
    assert "elsewhere.csv, pid 4242 on far-host" in res.stderr
    report = json.loads(Path("logs/deployment_report.json").read_text())
    assert [(s["name"], s["status"]) for s in report["steps"]][-1] == ("load", "failed")
    (file,) = report["steps"][-1]["details"]["files"]
    assert file["status"] == "failed" and "far-host" in file["message"]
    assert one(deployed_db, "SELECT count(*) FROM public.new_unified_agents") == 0


def test_a_batch_has_the_server_notice_a_vanished_client_within_minutes(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A load from a machine whose network is then cut leaves its batch open until the server
    notices; with the operating system's keepalive that took two hours, and the table's claim
    held as long. Each batch sets the server's keepalive for its own transaction (and the
    session keeps its own settings for the next client of a pooler)."""
    if one(deployed_db, "SELECT inet_server_addr() IS NULL"):
        pytest.skip("a Unix socket has no TCP keepalive (the embedded server's connection)")
    fetch(deployed_db, "CREATE TABLE public.test_seen (idle text, count text, user_timeout text)")
    fetch(
        deployed_db,
        "CREATE FUNCTION public.test_seen() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
        "INSERT INTO public.test_seen VALUES (current_setting('tcp_keepalives_idle'), "
        "current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout')); "
        "RETURN NULL; END$$",
    )
    fetch(
        deployed_db,
        "CREATE TRIGGER test_seen AFTER INSERT ON public.new_agents "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.test_seen()",
    )
    invoke(["load", str(_small_file(tmp_path, "new_agents_kept.csv"))], dsn=deployed_db)
    assert set(fetch(deployed_db, "SELECT * FROM public.test_seen")) == {("60", "6", "120000")}


def test_a_silent_claim_with_a_batch_still_open_is_not_taken_over(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A load on another machine, silent for long, whose batch is still open on the server (its
    client froze mid-batch): taking over would leave the new load's rows waiting on that open
    transaction for good, so the load waits, then exits 3; once the batch ends, it goes on."""
    from syncpipe.services.load.ledger import BATCH_NAMESPACE

    path = _small_file(tmp_path, "new_agents_frozen.csv")
    _claim(deployed_db, tmp_path / "elsewhere.csv", quiet_s=3600)
    with psycopg.connect(deployed_db) as frozen:
        frozen.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, hashtext('public.new_agents'))",
            (BATCH_NAMESPACE,),
        )
        res = invoke(["load", str(path)], code=3, dsn=deployed_db, env=FAST)
        assert "elsewhere.csv, pid 4242 on far-host" in res.stderr
    invoke(["load", str(path)], dsn=deployed_db, env=FAST)
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 300


def test_a_claim_on_this_machine_holds_while_its_process_lives(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """On this machine the holder's process decides, not the silence: alive (however long
    silent: a batch waiting for a row another session holds), it blocks; killed, even not yet
    reaped by its parent (a zombie), it blocks no one."""
    path = _small_file(tmp_path, "new_agents_here.csv")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _claim(deployed_db, tmp_path / "other.csv", quiet_s=3600, pid=holder.pid, host="vm",
               place=_here(), allows_s=130)  # fmt: skip
        res = invoke(["load", str(path)], code=3, dsn=deployed_db, env=FAST)
        assert f"other.csv, pid {holder.pid} on vm" in res.stderr
        holder.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{holder.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        invoke(["load", str(path)], dsn=deployed_db, env=FAST)  # (the holder is a zombie)
    finally:
        holder.kill()
        holder.wait()
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 300


def test_a_claim_whose_process_id_was_given_to_another_process_blocks_no_one(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A load killed on this machine, its process id since given to an unrelated process (ids
    wrap within minutes on a busy machine): its claim is known by the process's start time
    too, so it holds while that very process runs and blocks no one after."""
    from syncpipe.services.load.claim import _started

    path = _small_file(tmp_path, "new_agents_reused.csv")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        started = _started(other.pid)
        assert started is not None
        _claim(deployed_db, tmp_path / "same.csv", quiet_s=3600, pid=other.pid, host="vm",
               place=_here(), pid_start=started)  # fmt: skip
        invoke(["load", str(path)], code=3, dsn=deployed_db, env=FAST)  # (that very process)
        fetch(deployed_db, "UPDATE syncpipe.load_files SET holder_pid_start = %s", (started - 7,))
        invoke(["load", str(path)], dsn=deployed_db, env=FAST)  # (an earlier one of that id)
    finally:
        other.kill()
        other.wait()
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 300


def test_a_forked_worker_claims_as_a_load_of_its_own() -> None:
    """Workers forked from a process that imported syncpipe (a prefork pool) do not share its
    claim token: their loads of one table exclude each other."""
    from syncpipe.services.load.claim import this_load

    parent = this_load(30).token
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # (the child: its token, then out without running the parent's cleanup)
        os.write(write, this_load(30).token.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child and child != parent and this_load(30).token == parent


def test_a_dry_run_waits_for_a_running_load(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A dry run's answer would depend on how far a running load of the table got (and its
    one-at-a-time lane held that load up): it waits like a load, and leaves no row behind."""
    path = _small_file(tmp_path, "new_agents_dry.csv")
    _claim(deployed_db, tmp_path / "elsewhere.csv", quiet_s=1)
    res = invoke(["load", "--dry-run", str(path)], code=3, dsn=deployed_db, env=FAST)
    assert "is being loaded by another syncpipe load (elsewhere.csv" in res.stderr
    fetch(deployed_db, "UPDATE syncpipe.load_files SET holder_token = NULL")
    invoke(["load", "--dry-run", str(path)], dsn=deployed_db, env=FAST)
    assert fetch(deployed_db, "SELECT file_name, holder_token FROM syncpipe.load_files") == [
        ("elsewhere.csv", None)
    ]


@pytest.mark.slow
def test_a_load_waits_for_a_dry_run_that_began_first(deployed_db: str, tmp_path: Path) -> None:
    """A dry run of a table holds it while it runs: a load begun meanwhile waits, then gives up
    naming the dry run (exit 3), or loads once the dry run is done; the dry run's row goes with
    it. (The load ran beside it, each trying the other's keys, 2.5 times slower.)"""
    path = _file(tmp_path)
    _slow(deployed_db)
    dry = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "load", str(path), "--dry-run", "--json"],
        env={
            **os.environ,
            "SYNCPIPE_DATABASE_URL": deployed_db,
            "SYNCPIPE_LOAD_BATCH_ROWS": BATCH,
            "SYNCPIPE_LOGS_DIR": str(tmp_path / "logs"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not one(
        deployed_db, "SELECT count(*) FROM syncpipe.load_files WHERE status = 'checking'"
    ):
        assert dry.poll() is None, dry.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    other = _small_file(tmp_path, "new_agents_more.csv")
    load = _start(deployed_db, other, tmp_path / "logs", SYNCPIPE_LOCK_TIMEOUT="1")
    _, err = load.communicate(timeout=60)
    assert load.returncode == 3, err
    sentence = err.strip().splitlines()[-1]
    assert "checked by another syncpipe load's dry run (new_agents_resume.csv" in sentence
    assert dry.poll() is None  # the dry run goes on
    out, err = dry.communicate(timeout=300)
    assert dry.returncode == 1, err  # (the file has rejects)
    assert json.loads(out)["files"][0]["status"] == "dry_run"
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.load_files") == 0
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 0
    load = _start(deployed_db, other, tmp_path / "logs", SYNCPIPE_LOCK_TIMEOUT="1")
    _, err = load.communicate(timeout=60)
    assert load.returncode == 0, err


def test_a_killed_dry_runs_row_goes_with_the_next_load(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A dry run killed on this machine leaves its 'checking' row: it blocks no one (its process
    is gone), and the next load of the table deletes it."""
    path = _small_file(tmp_path, "new_agents_next.csv")
    _claim(deployed_db, tmp_path / "killed.csv", quiet_s=1, place=_here(), pid=2**22 + 7)
    fetch(deployed_db, "UPDATE syncpipe.load_files SET status = 'checking'")
    invoke(["load", str(path)], dsn=deployed_db, env=FAST)
    assert fetch(deployed_db, "SELECT file_name, status FROM syncpipe.load_files") == [
        ("new_agents_next.csv", "loaded")
    ]
    assert "killed.csv" not in invoke(["report", "--format", "json"], dsn=deployed_db).stdout


def test_a_silent_claim_of_the_same_file_is_resumed(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The same file's unfinished row, held by a load silent for long: the load takes its claim
    and resumes it (its row, now this load's, finished)."""
    path = _small_file(tmp_path, "new_agents_same.csv")
    _claim(deployed_db, path, quiet_s=3600)
    invoke(["load", str(path)], dsn=deployed_db, env={"SYNCPIPE_LOCK_TIMEOUT": "0"})
    assert fetch(deployed_db, "SELECT status, holder_token FROM syncpipe.load_files") == [
        ("loaded", None)
    ]
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 300


@pytest.mark.slow
def test_a_load_whose_claim_was_taken_over_stops(deployed_db: str, tmp_path: Path) -> None:
    """A load found silent and taken over by another stops at its next batch (exit 3, one
    sentence), committing nothing more under a claim that is no longer its own."""
    path = _file(tmp_path)
    _pace(deployed_db)
    first = _start(deployed_db, path, tmp_path / "logs")
    _claimed(deployed_db, first, batches=2)
    fetch(deployed_db, "UPDATE syncpipe.load_files SET holder_token = 'taken-over'")
    taken = one(deployed_db, "SELECT count(*) FROM syncpipe.load_batches")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 3, err
    assert "Another syncpipe load took over the load of new_agents_resume.csv, having found" in err
    assert "Traceback" not in err
    # (at most the batches in flight when it was taken over committed after it)
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.load_batches") <= taken + 2
    assert one(deployed_db, "SELECT holder_token FROM syncpipe.load_files") == "taken-over"


@pytest.mark.slow
def test_an_interrupted_load_gives_up_its_claim(deployed_db: str, tmp_path: Path) -> None:
    """Ctrl-C: the load releases its claim on the way out, so another machine's load need not
    wait for it to fall silent."""
    path = _file(tmp_path)
    _pace(deployed_db)
    first = _start(deployed_db, path, tmp_path / "logs")
    _claimed(deployed_db, first)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 130
    assert fetch(deployed_db, "SELECT status, holder_token FROM syncpipe.load_files") == [
        ("loading", None)
    ]


def test_a_ledger_deployed_by_an_older_syncpipe_is_named(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A load ledger without the claim's columns (deployed by an earlier version): exit 2 with
    the remedy; `syncpipe deploy` brings it up to date and the load then runs."""
    path = _small_file(tmp_path, "new_agents_old.csv")
    fetch(deployed_db, "ALTER TABLE syncpipe.load_files DROP COLUMN holder_token CASCADE")
    res = invoke(["load", str(path)], code=2, dsn=deployed_db)
    assert "deployed by an older syncpipe; run `syncpipe deploy`" in res.stderr
    invoke(["deploy"], dsn=deployed_db)
    invoke(["load", str(path)], dsn=deployed_db)
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 300
    # (the same for one whose statuses know no dry run's 'checking' row)
    fetch(
        deployed_db,
        "ALTER TABLE syncpipe.load_files DROP CONSTRAINT load_files_status_check, "
        "ADD CONSTRAINT load_files_status_check "
        "CHECK (status IN ('loading', 'loaded', 'loaded_with_rejects'))",
    )
    res = invoke(["load", "--dry-run", str(path)], code=2, dsn=deployed_db)
    assert "deployed by an older syncpipe; run `syncpipe deploy`" in res.stderr
    invoke(["deploy"], dsn=deployed_db)
    invoke(["load", "--dry-run", str(path)], dsn=deployed_db)


@pytest.mark.slow
def test_ctrl_c_stops_a_load_waiting_for_another_at_once(deployed_db: str, tmp_path: Path) -> None:
    """A folder of two tables, one of them busy with another load: Ctrl-C stops the command at
    once (130), not after the lock timeout the waiting file would have waited out."""
    path = _file(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    _small_file(folder, "new_agents_more.csv")
    pages = Path(__file__).resolve().parents[1] / "data" / "raw_company_info.csv"
    (folder / pages.name).write_bytes(pages.read_bytes())
    _slow(deployed_db, 2.0)
    first = _start(deployed_db, path, tmp_path / "logs")
    _claimed(deployed_db, first)
    second = _start(deployed_db, folder, tmp_path / "logs", SYNCPIPE_LOCK_TIMEOUT="120")
    deadline = time.monotonic() + 60
    while not one(deployed_db, "SELECT count(*) FROM bronze.company_info_raw"):
        assert second.poll() is None and time.monotonic() < deadline, second.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # (its new_agents file waits for the first load)
    assert first.poll() is None
    t0 = time.monotonic()
    second.send_signal(signal.SIGINT)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 130, err
    assert time.monotonic() - t0 < 10
    first.kill()
    first.communicate()
