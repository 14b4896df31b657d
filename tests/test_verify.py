"""syncpipe verify: drift, missing objects, security lints, RLS behaviour, CI outputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import psycopg
import pytest

from tests.helpers import Invoke, fetch


def _exec(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def _failing(result_json: dict) -> set[tuple[str, str]]:
    return {(c["check"], c["object"]) for c in result_json["checks"] if c["status"] == "fail"}


def test_verify_with_fewer_exposed_schemas_than_deploy_finds_nothing_dropped(
    invoke: Invoke, deployed_db: str
) -> None:
    """SYNCPIPE_EXPOSED_SCHEMAS narrower than at deploy: verify still sees the objects deploy
    made in the other schemas (it said bronze's tables were dropped, exit 1)."""
    data = invoke(
        ["verify", "--json"], dsn=deployed_db, env={"SYNCPIPE_EXPOSED_SCHEMAS": '["public"]'}
    ).json()
    assert data["ok"] is True, [c for c in data["checks"] if c["status"] == "fail"]


def test_a_typo_in_the_security_settings_is_a_failure_not_fewer_checks(
    invoke: Invoke, deployed_db: str
) -> None:
    """SYNCPIPE_EXPOSED_SCHEMAS naming a schema the database lacks passed verify with public
    and bronze unchecked; a function allowed by its bare or upper-case name matched nothing."""
    data = invoke(
        ["verify", "--json"],
        dsn=deployed_db,
        env={"SYNCPIPE_EXPOSED_SCHEMAS": '["public", "nope"]'},
        code=1,
    ).json()
    (failed,) = [c for c in data["checks"] if c["status"] == "fail"]
    assert (failed["check"], failed["object"]) == ("exposed_schema", "schema nope")
    fetch(
        deployed_db,
        "CREATE FUNCTION public.search_agents() RETURNS int LANGUAGE sql "
        "SET search_path = pg_catalog AS 'SELECT 1'",
    )
    invoke(["verify"], dsn=deployed_db, code=1)  # (anon may execute it: not allowed)
    for name in ("search_agents", "PUBLIC.Search_Agents"):
        allowed = json.dumps([name])
        invoke(["verify"], dsn=deployed_db, env={"SYNCPIPE_API_ALLOWED_FUNCTIONS": allowed})


def test_verify_passes_on_a_fresh_deploy(invoke: Invoke, deployed_db: str) -> None:
    """Everything deployed and untouched: exit 0, nothing failing or skipped."""
    data = invoke(["verify", "--json"], dsn=deployed_db).json()
    assert data["ok"] is True
    # On a clean deploy (a Supabase-like database): no ERROR and no WARN from any lint
    assert data["summary"]["fail"] == 0 and data["summary"]["warn"] == 0
    assert {c["check"] for c in data["checks"] if c["status"] == "skip"} == {
        "pg_graphql_anon_table_exposed",
        "pg_graphql_authenticated_table_exposed",
    }
    checks = {c["check"] for c in data["checks"]}
    assert {
        "deployed",
        "unchanged",
        "rls_disabled_in_public",
        "function_search_path_mutable",
        "api_role_privilege",
        "read",
        "write",
    } <= checks


def test_verify_catches_a_dropped_table(invoke: Invoke, deployed_db: str) -> None:
    """A dropped table fails verify once, with its parts counted."""
    _exec(deployed_db, "DROP TABLE public.unified_merge_logs")
    data = invoke(["verify", "--json"], code=1, dsn=deployed_db).json()
    missing = [c for c in data["checks"] if c["check"] == "present" and c["status"] == "fail"]
    assert [c["object"] for c in missing] == ["table public.unified_merge_logs"]
    assert "columns" in missing[0]["message"]


def test_verify_catches_a_hand_edited_function(invoke: Invoke, deployed_db: str) -> None:
    """A function edited by hand in production is drift (catalog compared with catalog)."""
    _exec(
        deployed_db,
        "CREATE OR REPLACE FUNCTION syncpipe_internal.set_updated_at() RETURNS trigger LANGUAGE plpgsql "
        "SET search_path = pg_catalog, public AS $$ BEGIN RETURN NEW; END $$",
    )
    result = invoke(["verify"], code=1, dsn=deployed_db)
    assert "function syncpipe_internal.set_updated_at(): differs from what deploy" in result.stdout
    assert "Verify FAILED" in result.stdout


def test_verify_catches_disabled_rls(invoke: Invoke, deployed_db: str) -> None:
    """Disabling RLS on a table is caught by the catalog and by the security lint."""
    _exec(deployed_db, "ALTER TABLE public.new_agents DISABLE ROW LEVEL SECURITY")
    failing = _failing(invoke(["verify", "--json"], code=1, dsn=deployed_db).json())
    assert ("policy_exists_rls_disabled", "table public.new_agents") in failing
    assert ("unchanged", "table public.new_agents") in failing


def test_verify_catches_an_open_policy_and_a_risky_function(
    invoke: Invoke, deployed_db: str
) -> None:
    """An always-true write policy for anon and an anon-callable SECURITY DEFINER both fail."""
    _exec(
        deployed_db,
        "CREATE POLICY anon_write ON public.new_agents FOR ALL TO anon USING (true) WITH CHECK (true)",
        "GRANT ALL ON public.new_agents TO anon",
        "CREATE FUNCTION public.leak() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
        "GRANT EXECUTE ON FUNCTION public.leak() TO anon",
    )
    data = invoke(["verify", "--json"], code=1, dsn=deployed_db).json()
    failing = _failing(data)
    warned = {
        (c["check"], c["object"], c["level"]) for c in data["checks"] if c["status"] == "warn"
    }
    assert ("rls_policy_always_true", "policy public.new_agents.anon_write", "WARN") in warned
    assert (
        "anon_security_definer_function_executable",
        "function public.leak()",
        "WARN",
    ) in warned
    assert ("api_role_privilege", "privilege public.leak() for anon") in failing
    assert ("unknown", "policy public.new_agents.anon_write") in failing
    assert ("write", "table public.new_agents as anon (write)") in failing


def test_verify_reports_undeployed_database(invoke: Invoke, fresh_db: str) -> None:
    """Verify before any deploy fails with a clear message."""
    result = invoke(["verify"], code=1, dsn=fresh_db)
    assert "never deployed" in result.stdout


def test_verify_writes_junit(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    """--junit writes a JUnit XML file with one test case per check and failures marked."""
    _exec(deployed_db, "ALTER TABLE public.merge_review_queue DISABLE ROW LEVEL SECURITY")
    junit = tmp_path / "verify.xml"  # the folder must exist: --junit never creates one
    invoke(["verify", "--junit", str(junit)], code=1, dsn=deployed_db)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("failures", "0")) >= 1
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "table public.merge_review_queue" in failed


def test_verify_fails_when_a_sql_file_changed(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A file edited after deploy (not deployed yet) fails verify."""
    import shutil

    from syncpipe.sqlfiles import default_sql_dir

    sql_dir = tmp_path / "sql"
    shutil.copytree(default_sql_dir(), sql_dir)
    path = sql_dir / "rls" / "010_row_level_security.sql"
    path.write_text(path.read_text() + "\n-- edited\n")
    data = invoke(
        ["verify", "--json"], code=1, dsn=deployed_db, env={"SYNCPIPE_SQL_DIR": str(sql_dir)}
    ).json()
    assert ("deployed", "sql/rls/010_row_level_security.sql") in _failing(data)


@pytest.fixture
def master_row(deployed_db: str) -> str:
    """A deployed database holding one master row and one new agent."""
    _exec(
        deployed_db,
        "INSERT INTO public.new_unified_agents (full_name) VALUES ('Ada Lovelace')",
        "INSERT INTO public.new_agents (supabase_uuid, full_name) "
        "VALUES ('00000000-0000-4000-8000-000000000001', 'Ada Lovelace')",
    )
    return deployed_db


def _as(dsn: str, role: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        conn.execute(f"SET ROLE {role}".encode())
        conn.execute(
            "SELECT set_config('request.jwt.claims', "
            '\'{"sub": "00000000-0000-4000-8000-0000000000aa", "role": "authenticated"}\', false)'
        )
        cur = conn.execute(query.encode())
        rows = cur.fetchall() if cur.description else [(cur.rowcount,)]
        conn.rollback()
        return rows


def test_rls_anon_sees_nothing(master_row: str) -> None:
    """anon sees no rows in the master table and cannot read the sources."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(master_row, "anon", "SELECT count(*) FROM public.new_unified_agents")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(master_row, "anon", "SELECT count(*) FROM public.new_agents")


def test_rls_service_role_sees_everything(master_row: str) -> None:
    """service_role reads and writes every table."""
    assert _as(master_row, "service_role", "SELECT count(*) FROM public.new_unified_agents") == [
        (1,)
    ]
    assert _as(master_row, "service_role", "SELECT count(*) FROM public.new_agents") == [(1,)]
    assert _as(master_row, "service_role", "UPDATE public.new_agents SET team_id = 't'") == [(1,)]


def test_rls_authenticated_reads_but_cannot_write_the_master(master_row: str) -> None:
    """authenticated reads the master table but may not insert, update or delete."""
    assert _as(master_row, "authenticated", "SELECT full_name FROM public.new_unified_agents") == [
        ("Ada Lovelace",)
    ]
    for statement in (
        "INSERT INTO public.new_unified_agents (full_name) VALUES ('Mallory')",
        "UPDATE public.new_unified_agents SET full_name = 'Mallory'",
        "DELETE FROM public.new_unified_agents",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(master_row, "authenticated", statement)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(master_row, "authenticated", "SELECT * FROM public.new_agents")
    assert fetch(master_row, "SELECT full_name FROM public.new_unified_agents") == [
        ("Ada Lovelace",)
    ]


def test_auth_functions_read_request_jwt_claims(deployed_db: str) -> None:
    """The compat auth functions read request.jwt.claims as PostgREST sets it."""
    with psycopg.connect(deployed_db) as conn:
        conn.execute(
            "SELECT set_config('request.jwt.claims', "
            '\'{"sub": "00000000-0000-4000-8000-0000000000aa", "role": "authenticated", '
            '"email": "a@b.c"}\', true)'
        )
        row = conn.execute(
            "SELECT auth.uid()::text, auth.role(), auth.jwt() ->> 'email'"
        ).fetchone()
    assert row == ("00000000-0000-4000-8000-0000000000aa", "authenticated", "a@b.c")


def test_verify_rls_probes_on_tables_with_rows(invoke: Invoke, master_row: str) -> None:
    """With rows present, verify tries reads and writes per role and they pass."""
    data = invoke(["verify", "--json"], dsn=master_row).json()
    reads = {c["object"]: c for c in data["checks"] if c["check"] == "read"}
    assert (
        "judged from its policies"
        not in reads["table public.new_unified_agents as anon"]["message"]
    )
    assert reads["table public.new_unified_agents as authenticated"]["status"] == "pass"
    assert fetch(master_row, "SELECT count(*) FROM public.new_unified_agents") == [(1,)]


# -- the security lints, one case each ------------------------------------------------------
_USER_TABLE = "CREATE TABLE public.notes (id int, owner uuid); ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY"
_AN_AGENT = (
    "INSERT INTO public.new_unified_agents (full_name, emails) VALUES ('Ann Lee', '{ann@x.com}')"
)

LINT_CASES = [
    # (lint, level, object contains, exit code, setup statements)
    ("rls_disabled_in_public", "ERROR", "public.plain", 1, ["CREATE TABLE public.plain (x int)"]),
    (
        "policy_exists_rls_disabled",
        "ERROR",
        "public.merge_decisions",
        1,
        ["ALTER TABLE public.merge_decisions DISABLE ROW LEVEL SECURITY"],
    ),
    ("rls_enabled_no_policy", "INFO", "public.notes", 0, [_USER_TABLE]),
    (
        "security_definer_view",
        "ERROR",
        "public.agents_v",
        1,
        [_AN_AGENT, "CREATE VIEW public.agents_v AS SELECT * FROM public.new_unified_agents"],
    ),
    (
        "function_search_path_mutable",
        "WARN",
        "public.add_one(",
        0,
        [
            "CREATE FUNCTION public.add_one(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1'",
            "REVOKE EXECUTE ON FUNCTION public.add_one(int) FROM PUBLIC, anon, authenticated",
        ],
    ),
    ("extension_in_public", "WARN", "citext", 0, ["CREATE EXTENSION citext SCHEMA public"]),
    (
        "materialized_view_in_api",
        "WARN",
        "public.agents_mv",
        1,  # (and anon reads the agents through it: the RLS behaviour group fails)
        [
            _AN_AGENT,
            "CREATE MATERIALIZED VIEW public.agents_mv AS "
            "SELECT agent_id, full_name FROM public.new_unified_agents",
        ],
    ),
    (
        "rls_policy_always_true",
        "WARN",
        "public.notes.notes_edit",
        0,
        [
            _USER_TABLE,
            "CREATE POLICY notes_edit ON public.notes FOR UPDATE TO authenticated USING (true)",
        ],
    ),
    (
        "anon_security_definer_function_executable",
        "WARN",
        "public.leak()",
        1,  # (and api_role_privilege fails)
        [
            "CREATE FUNCTION public.leak() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
            "SET search_path = pg_catalog AS 'SELECT count(*) FROM public.new_unified_agents'"
        ],
    ),
    (
        "authenticated_security_definer_function_executable",
        "WARN",
        "public.leak()",
        1,  # (and api_role_privilege fails)
        [
            "CREATE FUNCTION public.leak() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
            "SET search_path = pg_catalog AS 'SELECT count(*) FROM public.new_unified_agents'",
            "REVOKE EXECUTE ON FUNCTION public.leak() FROM PUBLIC, anon",
        ],
    ),
    (
        "auth_rls_initplan",
        "WARN",
        "public.notes.own_notes",
        0,
        [
            _USER_TABLE,
            "CREATE POLICY own_notes ON public.notes FOR SELECT TO authenticated USING (auth.uid() = owner)",
        ],
    ),
    (
        "multiple_permissive_policies",
        "WARN",
        "public.notes (authenticated, SELECT)",
        0,
        [
            _USER_TABLE,
            "CREATE POLICY a ON public.notes FOR SELECT TO authenticated USING ((select auth.uid()) = owner)",
            "CREATE POLICY b ON public.notes FOR SELECT TO authenticated USING (id > 0)",
        ],
    ),
    (
        "api_role_privilege",
        "ERROR",
        "new_unified_agents_agent_id_seq (UPDATE) for anon",
        1,
        ["GRANT UPDATE ON SEQUENCE public.new_unified_agents_agent_id_seq TO anon"],
    ),
    (
        "internal_schema_reachable",
        "ERROR",
        "schema syncpipe_work for service_role",
        1,
        ["GRANT CREATE ON SCHEMA syncpipe_work TO service_role"],
    ),
]


@pytest.mark.parametrize(
    ("lint", "level", "obj", "code", "setup"), LINT_CASES, ids=[c[0] for c in LINT_CASES]
)
def test_each_security_lint_finds_what_supabase_would(
    invoke: Invoke, deployed_db: str, lint: str, level: str, obj: str, code: int, setup: list[str]
) -> None:
    """Each lint, under Supabase's name and level, names the object and the SQL that fixes it;
    verify exits 1 when anything exposes data or is an ERROR."""
    _exec(deployed_db, *setup)
    data = invoke(["verify", "--json"], code=code, dsn=deployed_db).json()
    found = [c for c in data["checks"] if c["check"] == lint and obj in c["object"]]
    assert found, [c for c in data["checks"] if c["status"] != "pass"]
    status = {"ERROR": "fail", "WARN": "warn", "INFO": "info"}[level]
    assert {(c["level"], c["status"]) for c in found} == {(level, status)}
    if level != "INFO":
        assert all(c["remediation"] for c in found)


def test_graphql_exposure_lints_run_where_pg_graphql_is(deployed_db: str) -> None:
    """The pg_graphql lints are skipped without pg_graphql; their queries find what anon and
    authenticated can select beyond the tables authenticated is meant to read."""
    from dataclasses import replace

    from syncpipe.services.verify import LINTS
    from syncpipe.services.verify.lints import run_lints
    from syncpipe.services.verify.result import VerifyResult
    from syncpipe.settings import Settings

    _exec(deployed_db, "CREATE TABLE public.plain (x int)")
    lints = tuple(replace(x, needs_extension=None) for x in LINTS if x.number in ("0026", "0027"))
    result = VerifyResult(env="test", target="t", checked_at="now", deploy=None)
    with psycopg.connect(deployed_db) as conn:
        run_lints(
            conn,
            result,
            {
                "schemas": ["public"],
                "internal": [],
                "readable": list(Settings().authenticated_read_tables),
                "allowed": [],
            },
            lints,
        )
    found = {(c.check, c.object) for c in result.checks if c.status == "warn"}
    assert found == {
        ("pg_graphql_anon_table_exposed", "table public.plain"),
        ("pg_graphql_authenticated_table_exposed", "table public.plain"),
    }
