"""Rejected rows stay reported: the file stays "loaded with rejects" and every rerun (a load or
``deploy --full``) exits 1 until the file changes or the rejects are accepted."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from tests.helpers import Invoke, one
from tests.test_load import HEADER, agent_line, write

SAMPLE = Path(__file__).resolve().parents[1] / "data"


def test_rejects_are_reported_again_until_accepted(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The reject file (under SYNCPIPE_LOGS_DIR) names line, column, value and reason; a rerun
    reports the same rejects (exit 1); --accept-rejects records the decision (exit 0, and 0
    from then on); a changed file is loaded again."""
    logs = tmp_path / "my-logs"
    env = {"SYNCPIPE_LOGS_DIR": str(logs)}
    path = write(
        tmp_path / "new_agents.csv",
        [HEADER, agent_line(1), 'not-a-uuid,Bad,"[]","[]",t,"{}"', agent_line(2)],
    )
    first = invoke(["load", str(path)], code=1, dsn=deployed_db, env=env)
    assert str(logs / "rejects") in first.stdout
    assert "logs/rejects/" not in first.stdout.replace(str(logs / "rejects"), "")
    data = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db, env=env).json()
    f = data["files"][0]
    assert (f["status"], f["rejected"], f["rows_read"]) == ("loaded_with_rejects", 1, 0)
    assert "--accept-rejects" in f["message"]
    assert Path(f["reject_file"]).parent == logs / "rejects"
    with Path(f["reject_file"]).open(encoding="utf-8", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["line"], row["column"], row["value"]) == ("3", "supabase_uuid", "'not-a-uuid'")
    assert "is not a UUID" in row["reason"]
    assert row["raw"].startswith("not-a-uuid,Bad")
    assert one(deployed_db, "SELECT status FROM syncpipe.load_files") == "loaded_with_rejects"

    accepted = invoke(["load", str(path), "--accept-rejects", "--json"], dsn=deployed_db, env=env)
    assert "accepted" in accepted.json()["files"][0]["message"]
    again = invoke(["load", str(path), "--json"], dsn=deployed_db, env=env).json()["files"][0]
    assert again["status"] == "skipped"

    fixed = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1), agent_line(3)])
    f = invoke(["load", str(fixed), "--json"], dsn=deployed_db, env=env).json()["files"][0]
    assert (f["status"], f["inserted"], f["unchanged"]) == ("loaded", 1, 1)


def test_a_folder_holding_the_logs_folder_is_loaded_without_its_reject_files(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """`syncpipe load .` with the logs folder inside the data folder: the reject file a load
    writes there (named after the file it comes from, so matching its pattern) is not loaded
    by the next run (it failed the header check, exit 1 for ever after)."""
    env = {"SYNCPIPE_LOGS_DIR": str(tmp_path / "logs")}
    write(
        tmp_path / "new_agents_feed.csv",
        [HEADER, agent_line(1), 'not-a-uuid,Bad,"[]","[]",t,"{}"'],
    )
    invoke(["load", str(tmp_path)], code=1, dsn=deployed_db, env=env)
    assert list((tmp_path / "logs" / "rejects").glob("new_agents_feed*.csv"))
    data = invoke(
        ["load", str(tmp_path), "--accept-rejects", "--json"], dsn=deployed_db, env=env
    ).json()
    assert [Path(f["file"]).name for f in data["files"]] == ["new_agents_feed.csv"]


def test_accepting_rejects_on_the_first_load_exits_0(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """--accept-rejects on a first load still writes the reject file, and exits 0."""
    path = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1), "x,y"])
    f = invoke(["load", str(path), "--accept-rejects", "--json"], dsn=deployed_db).json()["files"][
        0
    ]
    assert (f["status"], f["rejected"], f["rejects_accepted"]) == ("loaded_with_rejects", 1, True)
    assert Path(f["reject_file"]).exists()
    f = invoke(["load", str(path), "--json"], dsn=deployed_db).json()["files"][0]
    assert f["status"] == "skipped"


def test_deploy_full_reports_rejects_again_until_accepted(
    invoke: Invoke, fresh_db: str, tmp_path: Path
) -> None:
    """A retried ``deploy --full`` fails at the load step while the rejects stand, naming the
    configured rejects folder; after --accept-rejects it runs through."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE / "new_agents.csv", data)
    with (data / "new_agents.csv").open("a", encoding="utf-8") as fh:
        fh.write('not-a-uuid,Broken Row,"[]","[]",harbor-realty,\n')
    logs = tmp_path / "elsewhere"
    env = {"SYNCPIPE_DATA_DIR": str(data), "SYNCPIPE_LOGS_DIR": str(logs)}
    for _ in range(2):
        result = invoke(["deploy", "--full"], dsn=fresh_db, code=1, env=env)
        assert "stopped at load" in result.stderr and "1 row(s) rejected" in result.stderr
        assert str(logs / "rejects") in result.stderr
    invoke(["load", str(data), "--accept-rejects"], dsn=fresh_db, env=env)
    invoke(["deploy", "--full"], dsn=fresh_db, env=env)
    assert one(fresh_db, "SELECT count(*) FROM new_unified_agents") > 0


def test_outputs_that_cannot_be_written_are_named(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A pipe given to load, a logs folder that is a file, a pairs file on a full disk: each
    one sentence naming the path (or the setting), exit 2 (they were "Unexpected error: ..." with the Python
    exception's name, or waited for ever on a pipe without a writer)."""
    import os

    fifo = tmp_path / "new_agents_pipe.csv"
    os.mkfifo(fifo)
    out = invoke(["load", str(fifo)], code=2, dsn=deployed_db)
    assert "is not a regular file (a pipe or a device)" in out.stderr

    not_a_folder = tmp_path / "logs-file"
    not_a_folder.write_text("")
    path = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1), "not-a-uuid,Bad"])
    out = invoke(
        ["load", str(path)], code=2, dsn=deployed_db, env={"SYNCPIPE_LOGS_DIR": str(not_a_folder)}
    )
    # (a bad setting, before any work: it was found when the first reject was written)
    assert "Setting SYNCPIPE_LOGS_DIR is invalid" in out.stderr
    assert "logs-file is a file, not a folder" in out.stderr
    assert one(deployed_db, "SELECT count(*) FROM new_agents") == 0
    invoke(["load", str(path)], code=None, dsn=deployed_db)
    assert one(deployed_db, "SELECT count(*) FROM new_agents") == 1  # the good row

    if Path("/dev/full").exists():
        out = invoke(["merge", "--dry-run", "--output", "/dev/full"], code=2, dsn=deployed_db)
        assert "Cannot write the pairs file /dev/full" in out.stderr
