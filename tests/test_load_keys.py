"""A key belongs to the file that loaded it first: a different file of the table repeating it
has that row rejected, naming the key and the other file (and its line while the ledger knows
it), whatever the order, the streams or the run; a changed version of the same file updates its
own keys. ``--dry-run`` reports keys repeated across batches and files too."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Invoke, fetch, one
from tests.test_load import HEADER, agent_line, write


def _rejects(path: str) -> dict[int, str]:
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return {int(r["line"]): r["reason"] for r in csv.DictReader(fh)}


def _key(i: int) -> str:
    return agent_line(i).split(",", 1)[0]


def _names(dsn: str) -> dict[str, str]:
    return dict(fetch(dsn, "SELECT supabase_uuid::text, full_name FROM public.new_agents"))


@pytest.mark.parametrize("big_first", [True, False])
def test_a_key_loaded_by_another_file_is_rejected_naming_it(
    invoke: Invoke, deployed_db: str, tmp_path: Path, big_first: bool
) -> None:
    """Two files of new_agents share 300 keys, loaded in one run (--jobs 2, small batches, 2
    streams), each content first in turn: the file loaded second (name order) keeps its own
    rows, and each shared key is rejected naming the key, the first file and its line; a
    rerun changes nothing."""
    folder = tmp_path / "in"
    folder.mkdir()
    big = (range(0, 1000), "Agent Number")
    small = (range(700, 1500), "Other ")
    first_rows, second_rows = (big, small) if big_first else (small, big)
    first, second = "new_agents_a.csv", "new_agents_b.csv"
    for name, (keys, prefix) in ((first, first_rows), (second, second_rows)):
        write(folder / name, [HEADER, *(agent_line(i, name=f"{prefix}{i}") for i in keys)])
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "64", "SYNCPIPE_LOAD_STREAMS": "2"}
    data = invoke(
        ["load", str(folder), "--json", "--jobs", "2"], code=1, dsn=deployed_db, env=env
    ).json()
    by_name = {Path(f["file"]).name: f for f in data["files"]}
    assert by_name[first]["status"] == "loaded"
    loser = by_name[second]
    assert loser["status"] == "loaded_with_rejects"
    own = len(second_rows[0]) - 300
    assert (loser["inserted"], loser["rejected"]) == (own, 300)
    assert loser["rejected_by_reason"] == {f"duplicate key already loaded from {first}": 300}
    first_line = {i: n for n, i in enumerate(first_rows[0], start=2)}
    expected = {
        n: f"duplicate key {_key(i)} already loaded from {first} (line {first_line[i]})"
        for n, i in enumerate(second_rows[0], start=2)
        if i in first_line
    }
    assert _rejects(loser["reject_file"]) == expected
    names = _names(deployed_db)
    assert len(names) == 1500
    keys, prefix = first_rows
    assert all(names[_key(i)] == f"{prefix}{i}" for i in keys)
    keys, prefix = second_rows
    assert all(names[_key(i)] == f"{prefix}{i}" for i in keys if i not in first_line)

    # A rerun: both files skipped (the second reported again with its rejects).
    again = invoke(["load", str(folder), "--json"], code=1, dsn=deployed_db).json()
    statuses = {Path(f["file"]).name: f["status"] for f in again["files"]}
    assert statuses == {first: "skipped", second: "loaded_with_rejects"}
    assert _names(deployed_db) == names


def test_the_same_file_changed_updates_its_keys_and_another_file_stays_refused(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A changed version of the same file updates its own keys (the reload path); a different
    file repeating them is refused even after the merge has rewritten the rows, in a later run,
    and by --dry-run (which also reports keys repeated across batches of one file)."""
    folder = tmp_path / "in"
    folder.mkdir()
    path_a = write(folder / "new_agents_a.csv", [HEADER, *(agent_line(i) for i in range(400))])
    invoke(["load", str(path_a)], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)

    write(path_a, [HEADER, *(agent_line(i, name=f"Renamed {i}") for i in range(400))])
    f = invoke(["load", str(path_a), "--json"], dsn=deployed_db).json()["files"][0]
    assert (f["status"], f["updated"], f["rejected"]) == ("loaded", 400, 0)

    path_b = folder / "new_agents_b.csv"
    write(path_b, [HEADER, agent_line(5, name="Intruder"), agent_line(9000)])
    dry = invoke(["load", str(path_b), "--json", "--dry-run"], code=1, dsn=deployed_db).json()
    assert dry["files"][0]["rejected"] == 1
    f = invoke(["load", str(path_b), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (1, 1)
    assert _rejects(f["reject_file"]) == {
        2: f"duplicate key {_key(5)} already loaded from new_agents_a.csv (line 7)"
    }
    assert one(
        deployed_db,
        "SELECT full_name FROM public.new_agents WHERE supabase_uuid = %s",
        (_key(5),),
    ) == ("Renamed 5")

    # The first file is gone from the disk: the reason still names it, without a line.
    path_a.unlink()
    path_c = write(folder / "new_agents_c.csv", [HEADER, agent_line(6, name="Late")])
    f = invoke(["load", str(path_c), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert _rejects(f["reject_file"]) == {
        2: f"duplicate key {_key(6)} already loaded from new_agents_a.csv"
    }


def test_dry_run_reports_a_key_repeated_across_batches(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A key repeated 500 lines later, in another batch: --dry-run reports it like the load."""
    lines = [agent_line(i) for i in range(1000)]
    lines.append(agent_line(3, name="Again"))
    path = write(tmp_path / "new_agents.csv", [HEADER, *lines])
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "100"}
    dry = invoke(["load", str(path), "--json", "--dry-run"], code=1, dsn=deployed_db, env=env)
    f = dry.json()["files"][0]
    assert (f["rows_read"], f["inserted"], f["rejected"]) == (1001, 1000, 1)
    assert _rejects(f["reject_file"]) == {
        1002: f"duplicate key {_key(3)} in this file (first at line 5)"
    }
    real = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db, env=env).json()
    assert _rejects(real["files"][0]["reject_file"]) == _rejects(f["reject_file"])
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 1000


def test_two_loads_of_different_files_at_once_keep_one_owner_per_key(
    deployed_db: str, tmp_path: Path
) -> None:
    """Two processes load two files sharing every key at the same time: no deadlock, each key
    loaded once, by one file, and the other file's row rejected naming it."""
    rows_a = [agent_line(i) for i in range(2000)]
    rows_b = [agent_line(i, name=f"B {i}") for i in reversed(range(2000))]
    path_a = write(tmp_path / "new_agents_a.csv", [HEADER, *rows_a])
    path_b = write(tmp_path / "new_agents_b.csv", [HEADER, *rows_b])
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db, "SYNCPIPE_LOAD_BATCH_ROWS": "200"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "syncpipe", "load", str(p), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (path_a, path_b)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert "deadlock" not in (out + err).lower()
        results.append(proc.returncode)
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 2000
    owners = fetch(
        deployed_db,
        "SELECT f.file_name, count(*) FROM public.new_agents a "
        "JOIN syncpipe.load_files f ON f.id = a.load_file_id GROUP BY 1",
    )
    rejected = fetch(
        deployed_db, "SELECT file_name, rejected FROM syncpipe.load_files ORDER BY file_name"
    )
    loaded = dict(owners)
    assert sum(loaded.values()) == 2000
    # every row one file did not load is that file's reject
    assert {name: 2000 - loaded.get(name, 0) for name, _ in rejected} == dict(rejected)
    assert set(results) <= {0, 1} and 1 in results
