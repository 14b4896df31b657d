"""Run reports belong to their database: each names its target, and `report` reads its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from tests.conftest import ROOT
from tests.helpers import Invoke, one


def _file_report() -> dict[str, object]:
    return json.loads(Path("logs/deployment_report.json").read_text())


def test_two_databases_in_one_folder_never_see_each_others_runs(
    invoke: Invoke, deployed_db: str, fresh_db: str, tmp_path: Path
) -> None:
    """A full run on one database, a deploy on another, a third never deployed: each report
    shows its own last run only; the file names the target of the run that wrote it."""
    shutil.copytree(ROOT / "data", tmp_path / "data")
    invoke(["deploy", "--full"], dsn=deployed_db)
    first = _file_report()
    assert first["kind"] == "full" and "syncpipe_test_" in str(first["target"])
    assert str(first["target"]).endswith("/" + conninfo_to_dict(deployed_db)["dbname"])

    full = invoke(["report", "--format", "json"], dsn=deployed_db).json()
    assert full["last_run"]["kind"] == "full"
    assert full["last_run"]["target"] == first["target"]

    # the second database: deployed from the same folder, it sees only its own deploy
    invoke(["deploy"], dsn=fresh_db)
    second = _file_report()
    assert second["kind"] == "deploy" and second["target"] != first["target"]
    own = invoke(["report", "--format", "json"], dsn=fresh_db).json()
    assert own["last_run"]["kind"] == "deploy" and own["last_run"]["target"] == second["target"]
    # and the first database still shows its full run, although the file was overwritten
    again = invoke(["report", "--format", "json"], dsn=deployed_db).json()
    assert again["last_run"]["kind"] == "full"
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.run_reports") == 1
    assert one(fresh_db, "SELECT count(*) FROM syncpipe.run_reports") == 1


def test_a_database_never_deployed_has_no_last_run(
    invoke: Invoke, deployed_db: str, fresh_db: str, tmp_path: Path
) -> None:
    """`report` on a database never deployed shows no run, even after runs elsewhere."""
    invoke(["deploy"], dsn=deployed_db)
    data = invoke(["report", "--format", "json"], dsn=fresh_db).json()
    assert data["deployed"] is False and data["last_run"] is None


def test_a_failed_connection_still_names_its_target(invoke: Invoke) -> None:
    """The run report of a deploy that could not connect says which database it was for."""
    invoke(["deploy"], dsn="postgresql://nobody@127.0.0.1:1/elsewhere?connect_timeout=2", code=3)
    report = _file_report()
    assert report["status"] == "failed"
    assert report["target"] == "127.0.0.1:1/elsewhere"
    assert report["database"] == {"target": "127.0.0.1:1/elsewhere"}
