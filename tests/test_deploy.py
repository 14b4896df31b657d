"""syncpipe deploy on a real PostgreSQL: from scratch, no-op, changes, failures, locks, plan."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from syncpipe.db.locks import LOCK_NAMESPACE, LockKind
from syncpipe.sqlfiles import default_sql_dir
from tests.helpers import Invoke, fetch, one

TABLES = [
    "bronze.company_info_raw",
    "public.new_agents",
    "public.unified_company_member",
    "public.new_unified_agents",
    "public.unified_agent_sources",
    "public.merge_review_queue",
    "public.unified_merge_logs",
]


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A private copy of sql/ the test may edit (used through SYNCPIPE_SQL_DIR)."""
    target = tmp_path / "sql"
    shutil.copytree(default_sql_dir(), target)
    return target


def test_deploy_from_scratch_creates_everything(invoke: Invoke, fresh_db: str) -> None:
    """A first deploy applies every file, records the ledger, verifies and writes the report."""
    result = invoke(["deploy", "--json"], dsn=fresh_db)
    data = result.json()
    files = data["deploy"]["files"]
    assert files and all(f["status"] == "applied" for f in files)
    assert data["verify"]["ok"] is True
    for table in TABLES:
        assert one(fresh_db, "SELECT to_regclass(%s) IS NOT NULL", (table,)), table
    index_methods = dict(
        fetch(
            fresh_db,
            "SELECT indexrelid::regclass::text, am.amname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
            "WHERE i.indrelid = 'public.new_unified_agents'::regclass",
        )
    )
    # A trigram GIN on names; contact lookups go through the B-tree of the contact keys
    assert index_methods["new_unified_agents_name_trgm"] == "gin"
    assert "new_unified_agents_emails_gin" not in index_methods
    assert one(fresh_db, "SELECT to_regclass('public.merge_agent_contacts_pkey') IS NOT NULL")
    # The merge's internal keys sort in byte order, their most selective column first
    keys = dict(
        fetch(
            fresh_db,
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname IN ('unified_agent_sources_pkey', 'merge_agent_contacts_pkey')",
        )
    )
    assert keys["unified_agent_sources"] == "PRIMARY KEY (source_id, source)"
    assert keys["merge_agent_contacts"] == "PRIMARY KEY (value, kind, agent_id)"
    collations = fetch(
        fresh_db,
        "SELECT attrelid::regclass::text || '.' || attname, collname FROM pg_attribute a "
        "JOIN pg_collation c ON c.oid = a.attcollation "
        "WHERE attname IN ('source_id', 'record_hash', 'name_key', 'source_team_id')"
        " AND attrelid IN ('public.unified_agent_sources'::regclass,"
        " 'public.unified_company_member'::regclass, 'public.new_unified_agents'::regclass)",
    )
    assert len(collations) == 5 and all(name == "C" for _, name in collations), collations
    # Contact values in byte order wherever the merge keeps them: a probe of the shared
    # contacts' key by a value of the contact keys (byte order) can then use the whole key
    contact_collations = fetch(
        fresh_db,
        "SELECT attrelid::regclass::text, collname FROM pg_attribute a "
        "JOIN pg_collation c ON c.oid = a.attcollation WHERE attname = 'value'"
        " AND attrelid IN ('public.merge_agent_contacts'::regclass,"
        " 'public.merge_shared_contacts'::regclass) ORDER BY 1",
    )
    assert contact_collations == [("merge_agent_contacts", "C"), ("merge_shared_contacts", "C")]
    # The pages the member pipeline has still to read are found by a partial index
    assert (
        one(
            fresh_db,
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
            "WHERE indexrelid = 'bronze.company_info_raw_unsynced_idx'::regclass",
        )
        == "(NOT members_synced)"
    )
    # The merge's work tables and the internal functions live in schemas no API role may use
    # (the merge's entry points run as their owner)
    assert (
        fetch(
            fresh_db,
            "SELECT s, r FROM unnest(ARRAY['syncpipe_work', 'syncpipe_internal', 'syncpipe']) s, "
            "unnest(ARRAY['service_role', 'authenticated', 'anon']) r "
            "WHERE has_schema_privilege(r, s, 'CREATE') OR has_schema_privilege(r, s, 'USAGE')",
        )
        == []
    )
    assert one(fresh_db, "SELECT count(*) FROM syncpipe.applied_files") == len(files)
    ledger = fetch(
        fresh_db, "SELECT kind, sha256, applied_by, duration_ms FROM syncpipe.applied_files"
    )
    assert all(len(sha) == 64 and by and ms >= 0 for _, sha, by, ms in ledger)
    report = json.loads(Path("logs/deployment_report.json").read_text())
    assert report["report_version"] == 1 and report["status"] == "success"
    assert [s["name"] for s in report["steps"]] == ["deploy", "verify"]
    assert len(report["steps"][0]["details"]["files"]) == len(files)
    assert any(Path("logs").glob("*.jsonl"))


def test_functions_get_fixed_search_path_and_rls_everywhere(deployed_db: str) -> None:
    """Every function syncpipe deploys pins a search_path of trusted schemas; RLS is on."""
    paths = fetch(
        deployed_db,
        """
        SELECT p.oid::regprocedure::text,
               (SELECT c FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search_path=%%')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'bronze', 'syncpipe_internal') AND p.prokind = 'f'
          AND p.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')
        ORDER BY 1
        """,
    )
    assert len(paths) > 20
    trusted = {"pg_catalog", "extensions", "syncpipe_work"}  # (no API role may create there)
    for name, path in paths:
        assert path and set(path.removeprefix("search_path=").split(", ")) <= trusted, name
    no_rls = fetch(
        deployed_db,
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'bronze') AND c.relkind = 'r' AND NOT c.relrowsecurity
        """,
    )
    assert no_rls == []


def test_noop_redeploy_applies_nothing(invoke: Invoke, deployed_db: str) -> None:
    """A second deploy with nothing changed applies nothing and says so."""
    result = invoke(["deploy"], dsn=deployed_db)
    assert "Nothing to deploy" in result.stdout
    data = invoke(["deploy", "--json"], dsn=deployed_db).json()
    assert data["deploy"]["applied"] == 0
    assert all(f["status"] == "unchanged" for f in data["deploy"]["files"])


def test_changed_function_file_is_reapplied(invoke: Invoke, fresh_db: str, sql_copy: Path) -> None:
    """Editing a function file re-applies that file only, and the new body is live."""
    env = {"SYNCPIPE_SQL_DIR": str(sql_copy)}
    invoke(["deploy"], dsn=fresh_db, env=env)
    path = sql_copy / "functions" / "010_timestamps.sql"
    path.write_text(
        path.read_text() + "\nCOMMENT ON FUNCTION syncpipe_internal.set_updated_at() IS 'v2';\n"
    )
    data = invoke(["deploy", "--json"], dsn=fresh_db, env=env).json()
    applied = [f["file"] for f in data["deploy"]["files"] if f["status"] == "applied"]
    assert applied == ["sql/functions/010_timestamps.sql"]
    assert (
        one(fresh_db, "SELECT obj_description('syncpipe_internal.set_updated_at'::regproc)") == "v2"
    )
    assert (
        one(
            fresh_db,
            "SELECT apply_count FROM syncpipe.applied_files "
            "WHERE file = 'functions/010_timestamps.sql'",
        )
        == 2
    )


def test_changed_ddl_file_is_refused(invoke: Invoke, fresh_db: str, sql_copy: Path) -> None:
    """An applied DDL file that changed is refused: DDL is append-only."""
    env = {"SYNCPIPE_SQL_DIR": str(sql_copy)}
    invoke(["deploy"], dsn=fresh_db, env=env)
    path = sql_copy / "ddl" / "010_bronze.sql"
    path.write_text(path.read_text() + "\nALTER TABLE bronze.company_info_raw ADD COLUMN x int;\n")
    result = invoke(["deploy"], code=1, dsn=fresh_db, env=env)
    assert "sql/ddl/010_bronze.sql" in result.stderr and "append-only" in result.stderr
    assert not one(
        fresh_db,
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = 'bronze' AND column_name = 'x'",
    )
    plan = invoke(["deploy", "--plan"], code=1, dsn=fresh_db, env=env)
    assert "refused" in plan.stdout


def test_failing_file_rolls_everything_back(invoke: Invoke, fresh_db: str, sql_copy: Path) -> None:
    """A syntax error names file:line and leaves nothing half-deployed."""
    (sql_copy / "functions" / "999_broken.sql").write_text(
        "-- a broken file\nSELECT 1;\nCREATE FUNCTION public.broken( RETURNS int;\n"
    )
    result = invoke(["deploy"], code=1, dsn=fresh_db, env={"SYNCPIPE_SQL_DIR": str(sql_copy)})
    assert "sql/functions/999_broken.sql:3:" in result.stderr
    assert "syntax error" in result.stderr
    assert "Traceback" not in result.stderr
    for table in TABLES:
        assert not one(fresh_db, "SELECT to_regclass(%s) IS NOT NULL", (table,))
    report = json.loads(Path("logs/deployment_report.json").read_text())
    assert report["status"] == "failed" and "999_broken.sql:3" in report["errors"][0]


def test_failure_after_a_good_deploy_is_recorded(
    invoke: Invoke, fresh_db: str, sql_copy: Path
) -> None:
    """When the ledger exists, a failed deploy is recorded as such and changes nothing."""
    env = {"SYNCPIPE_SQL_DIR": str(sql_copy)}
    invoke(["deploy"], dsn=fresh_db, env=env)
    (sql_copy / "ddl" / "900_more.sql").write_text("CREATE TABLE public.extra (id int);\n")
    (sql_copy / "functions" / "900_bad.sql").write_text("SELECT * FROM no_such_table;\n")
    result = invoke(["deploy"], code=1, dsn=fresh_db, env=env)
    assert "sql/functions/900_bad.sql:1:" in result.stderr and "no_such_table" in result.stderr
    assert not one(fresh_db, "SELECT to_regclass('public.extra') IS NOT NULL")
    assert (
        one(fresh_db, "SELECT status FROM syncpipe.deploy_runs ORDER BY id DESC LIMIT 1")
        == "failed"
    )


def test_transaction_control_in_a_file_is_refused_before_anything_runs(
    invoke: Invoke, fresh_db: str, sql_copy: Path
) -> None:
    """COMMIT at the top level of a file is refused before any file runs."""
    (sql_copy / "ddl" / "900_commit.sql").write_text("CREATE TABLE public.t1 (id int);\nCOMMIT;\n")
    result = invoke(["deploy"], code=1, dsn=fresh_db, env={"SYNCPIPE_SQL_DIR": str(sql_copy)})
    assert "sql/ddl/900_commit.sql:2: COMMIT controls the transaction" in result.stderr
    assert not one(fresh_db, "SELECT to_regnamespace('bronze') IS NOT NULL")


def test_non_utf8_sql_file_is_refused(invoke: Invoke, fresh_db: str, sql_copy: Path) -> None:
    """A SQL file in Latin-1 is named with line and byte."""
    (sql_copy / "ddl" / "900_latin1.sql").write_bytes(b"-- caf\xe9\nSELECT 1;\n")
    result = invoke(["deploy"], code=1, dsn=fresh_db, env={"SYNCPIPE_SQL_DIR": str(sql_copy)})
    assert "sql/ddl/900_latin1.sql:1: is not UTF-8 text (byte 0xE9" in result.stderr


def test_plan_writes_nothing(invoke: Invoke, fresh_db: str) -> None:
    """--plan lists every file as new and leaves the database untouched."""
    data = invoke(["deploy", "--plan", "--json"], dsn=fresh_db).json()
    assert {f["status"] for f in data["files"]} == {"new"}
    assert data["applied"] == 0 and data["would_apply"] == len(data["files"])
    assert not one(fresh_db, "SELECT to_regnamespace('syncpipe') IS NOT NULL")
    assert not one(fresh_db, "SELECT to_regclass('public.new_agents') IS NOT NULL")
    assert not Path("logs/deployment_report.json").exists()


def test_deploy_waits_for_the_lock_then_names_its_holder(invoke: Invoke, deployed_db: str) -> None:
    """A second deploy polls the advisory lock and exits 3 naming who holds it."""
    with psycopg.connect(deployed_db, application_name="other-deployer") as other:
        other.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, int(LockKind.DEPLOY))
        )
        pid = other.info.backend_pid
        result = invoke(["deploy"], code=3, dsn=deployed_db, env={"SYNCPIPE_LOCK_TIMEOUT": "0.5"})
        other.rollback()
    assert "Another syncpipe deploy is running" in result.stderr
    assert f"pid {pid}" in result.stderr and "other-deployer" in result.stderr


def test_two_concurrent_deploys_do_not_interleave(fresh_db: str, tmp_path: Path) -> None:
    """Two deploys started together: one applies everything, the other then finds nothing to do."""
    from syncpipe.db.database import Database
    from syncpipe.services.deploy import DeployService
    from syncpipe.settings import Settings

    results: list[int] = []
    errors: list[BaseException] = []

    def deploy() -> None:
        settings = Settings(_env_file=None, database_url=fresh_db, logs_dir=tmp_path)  # type: ignore[call-arg]
        try:
            with Database(settings) as db:
                results.append(len(DeployService(settings, db).run().to_apply))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results)[0] == 0 and sorted(results)[1] > 0
    assert one(fresh_db, "SELECT count(*) FROM syncpipe.deploy_runs WHERE status = 'success'") == 2


def test_drifted_function_is_restored_by_deploy(invoke: Invoke, deployed_db: str) -> None:
    """A hand-edited function is drift; the next deploy re-applies functions to restore it."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION syncpipe_internal.set_updated_at() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path = pg_catalog AS $$ BEGIN RETURN NEW; END $$"
        )
    plan = invoke(["deploy", "--plan", "--json"], dsn=deployed_db).json()
    assert {f["kind"] for f in plan["files"] if f["status"] == "drifted"} == {
        "functions",
        "triggers",
        "rls",
    }
    invoke(["deploy"], dsn=deployed_db)
    assert "updated_at := now()" in one(
        deployed_db, "SELECT pg_get_functiondef('syncpipe_internal.set_updated_at'::regproc)"
    )
    invoke(["verify"], dsn=deployed_db)


def test_deploy_never_absorbs_drift(invoke: Invoke, deployed_db: str) -> None:
    """Regression: after a hand-dropped index and a hand-added column, `deploy` then `verify`
    passed with the index still missing and the column still there. Deploy rebuilds what it
    owns and says so; what it does not own stays reported, after any number of deploys."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("DROP INDEX public.unified_agent_sources_team_idx")
        conn.execute("ALTER TABLE public.new_agents ADD COLUMN nickname text")
        conn.execute("ALTER TABLE public.merge_decisions DROP CONSTRAINT merge_decisions_known")
    before = invoke(["verify", "--json"], dsn=deployed_db, code=1).json()
    failing = {(c["check"], c["object"]) for c in before["checks"] if c["status"] == "fail"}
    assert ("present", "index public.unified_agent_sources.unified_agent_sources_team_idx") in (
        failing
    )
    assert ("unknown", "column public.new_agents.nickname") in failing

    plan = invoke(["deploy", "--plan", "--json"], dsn=deployed_db).json()
    assert plan["drift_refused"] == []
    assert sorted(plan["repaired"]) == [
        "constraint public.merge_decisions.merge_decisions_known (missing)",
        "index public.unified_agent_sources.unified_agent_sources_team_idx (missing)",
    ]
    first = invoke(["deploy"], dsn=deployed_db, code=1)  # its verify still fails: the column
    assert (
        "rebuilt index public.unified_agent_sources.unified_agent_sources_team_idx (missing)"
        in " ".join(first.stdout.split())
    )
    second = invoke(["deploy"], dsn=deployed_db, code=1)
    assert "Nothing to deploy" in second.stdout and "nickname" in second.stdout
    assert one(
        deployed_db, "SELECT to_regclass('public.unified_agent_sources_team_idx') IS NOT NULL"
    )
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'merge_decisions_known'",
        )
        == 1
    )
    after = invoke(["verify", "--json"], dsn=deployed_db, code=1).json()
    failing = {(c["check"], c["object"]) for c in after["checks"] if c["status"] == "fail"}
    assert failing == {("unknown", "column public.new_agents.nickname")}


def test_deploy_refuses_drift_it_will_not_repair(invoke: Invoke, deployed_db: str) -> None:
    """A dropped column is not deploy's to recreate (its data is gone): deploy lists the drift,
    applies nothing and exits 1."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE public.new_unified_agents DROP COLUMN source_count CASCADE")
        conn.execute(
            "CREATE OR REPLACE FUNCTION syncpipe_internal.set_updated_at() RETURNS trigger "
            "LANGUAGE plpgsql SET search_path = pg_catalog AS $$ BEGIN RETURN NEW; END $$"
        )
    plan = invoke(["deploy", "--plan", "--json"], dsn=deployed_db, code=1).json()
    assert plan["drift_refused"] == ["column public.new_unified_agents.source_count (missing)"]
    result = invoke(["deploy"], dsn=deployed_db, code=1)
    assert "column public.new_unified_agents.source_count (missing)" in result.stderr
    assert "Nothing was applied" in result.stderr
    # the hand-edited function was not restored either: nothing was applied
    assert "updated_at := now()" not in one(
        deployed_db, "SELECT pg_get_functiondef('syncpipe_internal.set_updated_at'::regproc)"
    )
