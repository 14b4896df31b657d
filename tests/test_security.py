"""What the API roles can reach on a database set up the way Supabase sets one up.

Supabase grants anon, authenticated and service_role ALL on every new table, function and
sequence in `public` (default privileges), and exposes every function there as
`POST /rest/v1/rpc/<name>`. These tests read the catalog and act as the API roles would.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.agents import Sources
from tests.helpers import Invoke, fetch, one
from tests.supabase import api_role_privileges

ROOT = Path(__file__).resolve().parents[1]

#: The only functions anon and authenticated may execute: Supabase's auth helpers.
ALLOWED = sorted(
    (role, f"auth.{name}()", "EXECUTE")
    for role in ("anon", "authenticated")
    for name in ("email", "jwt", "role", "uid")
)

#: The commit whose sql/ kept the helpers in public (the deployment the upgrade starts from).
BEFORE_INTERNAL_SCHEMA = "68ea112"


def privileges(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(dsn) as conn:
        return api_role_privileges(conn)


def test_api_roles_may_execute_only_the_auth_helpers(deployed_db: str) -> None:
    """The allow-list, read from the catalog: no syncpipe function or sequence for the API."""
    assert privileges(deployed_db) == ALLOWED
    # The RPC entry points: service_role only
    assert fetch(
        deployed_db,
        "SELECT p.proname, has_function_privilege('service_role', p.oid, 'EXECUTE'), p.prosecdef "
        "FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1",
    ) == [
        ("review_decide", True, True),
        ("run_unified_member_pipeline", True, True),
        ("run_unified_merge_batch", True, True),
    ]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_the_public_key_cannot_move_the_agent_id_sequence(deployed_db: str, role: str) -> None:
    """Regression: the anon key once moved the agent id sequence to 2^63 by RPC."""
    attempts = [
        "SELECT public.merge_allocate_ids('public.new_unified_agents', 'agent_id', 9e18::bigint)",
        "SELECT syncpipe_internal.merge_allocate_ids("
        "'public.new_unified_agents', 'agent_id', 9e18::bigint)",
        "SELECT setval(pg_get_serial_sequence('public.new_unified_agents', 'agent_id'), 9e18)",
        "SELECT nextval(pg_get_serial_sequence('public.new_unified_agents', 'agent_id'))",
        "SELECT syncpipe_internal.merge_work_clear()",
        "SELECT public.run_unified_merge_batch('{}')",
    ]
    for attempt in attempts:
        with psycopg.connect(deployed_db) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            with pytest.raises(
                (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction)
            ):
                conn.execute(attempt.encode())
    assert one(deployed_db, "SELECT last_value FROM public.new_unified_agents_agent_id_seq") == 1


def test_no_api_role_can_plant_a_function_the_merge_would_call(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Regression: service_role created syncpipe_work.similarity() and the operator's merge ran
    it as the owner. No schema on any syncpipe function's search_path is writable by an API
    role, and extension functions planted in public are never resolved."""
    writable = fetch(
        deployed_db,
        """
        SELECT DISTINCT p.oid::regprocedure::text, s, r
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             unnest(p.proconfig) c,
             unnest(string_to_array(replace(substr(c, 13), ' ', ''), ',')) s,
             unnest(ARRAY['anon', 'authenticated', 'service_role']) r
        WHERE n.nspname IN ('public', 'bronze', 'syncpipe_internal') AND c LIKE 'search_path=%%'
          AND to_regnamespace(s) IS NOT NULL AND has_schema_privilege(r, s, 'CREATE')
        """,
    )
    assert writable == []
    for role in ("anon", "authenticated", "service_role"):
        for schema in ("syncpipe_work", "syncpipe_internal", "extensions", "public"):
            with psycopg.connect(deployed_db) as conn:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(
                        sql.SQL(
                            "CREATE FUNCTION {}.similarity(text, text) RETURNS real "
                            "LANGUAGE sql AS 'SELECT 1'"
                        ).format(sql.Identifier(schema))
                    )
    # Even where someone may create functions in public, the merge never calls them.
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        for signature in ("similarity(text, text)", "levenshtein(text, text)", "unaccent(text)"):
            conn.execute(
                f"CREATE FUNCTION public.{signature} RETURNS text LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'hijacked'; END $$".encode()
            )
    src = Sources()
    src.agent("Zoë Dvořák", emails=["zoe@mail.com"], team="t1")
    src.agent("Zoe Dvorak", phones=["5551230001"], team="t1")
    src.agent("Jonathan Smithe", team="t1")
    src.page("t1", [{"name": "Jonathan Smith", "email": "js@mail.com"}])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    invoke(["merge", "--dry-run"], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    assert one(deployed_db, "SELECT count(*) FROM public.merge_review_queue") >= 1


def test_an_upgrade_moves_and_revokes_in_one_deploy(
    invoke: Invoke, supabase_db: str, tmp_path: Path
) -> None:
    """A deployment of the version that kept its helpers in public is upgraded by one deploy:
    the helpers move, the API roles lose every privilege, and the data keeps working."""
    old_sql = tmp_path / "old"
    old_sql.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_INTERNAL_SCHEMA, "sql"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old_sql)], input=archive, check=True)
    # (that version fails today's verify: its helpers are open to the API roles)
    invoke(
        ["deploy", "--no-verify"], dsn=supabase_db, env={"SYNCPIPE_SQL_DIR": str(old_sql / "sql")}
    )
    assert "api_role_privilege" in invoke(["verify"], dsn=supabase_db, code=1).stdout
    before = privileges(supabase_db)
    assert ("anon", "public.merge_allocate_ids(text,text,bigint)", "EXECUTE") in before
    src = Sources()
    src.agent("Ada King", emails=["ada@mail.com"])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=supabase_db)

    invoke(["deploy"], dsn=supabase_db)
    assert privileges(supabase_db) == ALLOWED
    assert (
        one(
            supabase_db,
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
            "AND proname LIKE 'merge%%'",
        )
        == 0
    )
    invoke(["merge"], dsn=supabase_db)
    invoke(["verify"], dsn=supabase_db)
    assert one(supabase_db, "SELECT count(*) FROM public.new_unified_agents") == 1


def test_creating_a_server_role_is_safe_when_deploys_race(pg_server: str) -> None:
    """Roles belong to the whole server: four deploys creating the same role at once all go on
    (the losers find it exists), instead of failing on pg_authid's unique index."""
    from psycopg import sql as psql

    from syncpipe.services.compat import CompatAction, apply_compat

    role = f"syncpipe_race_{uuid.uuid4().hex[:8]}"
    action = CompatAction(
        f"create role {role}",
        psql.SQL("CREATE ROLE {} NOLOGIN").format(psql.Identifier(role)),
        may_exist=True,
    )
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def deploy() -> None:
        try:
            with psycopg.connect(pg_server) as conn:
                conn.execute("SELECT 1")  # in a transaction, like deploy
                barrier.wait()
                apply_compat(conn, [action])
                conn.execute("SELECT pg_sleep(0.2)")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deploy) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert one(pg_server, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == 1
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(psql.SQL("DROP ROLE IF EXISTS {}").format(psql.Identifier(role)))


def test_helpers_work_whatever_the_callers_search_path(deployed_db: str) -> None:
    """Regression: the name comparison (near_spelling) failed when called with a search_path
    lacking the extensions schema; every function now pins its own."""
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET search_path = ''")
        assert conn.execute(
            "SELECT syncpipe_internal.names_compatible('jane thompson', 'jane', 'thompson', NULL, "
            "ARRAY['jane'], 'jane thompsen', 'jane', 'thompsen', NULL, ARRAY['jane']), "
            "syncpipe_internal.names_compatible('bob smith', 'bob', 'smith', NULL, "
            "ARRAY['robert'], 'robert smith', 'robert', 'smith', NULL, ARRAY['robert'])"
        ).fetchone() == (True, True)


def test_a_function_added_by_a_later_deploy_is_not_for_the_api(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A new function in a changed functions file (the rls files unchanged, so not applied
    again) is still closed to the API roles: PostgreSQL gives PUBLIC EXECUTE on every new
    function, and a per-schema default privilege cannot take that back."""
    import shutil

    from syncpipe.sqlfiles import default_sql_dir

    sql_dir = tmp_path / "sql"
    shutil.copytree(default_sql_dir(), sql_dir)
    path = sql_dir / "functions" / "050_lineage.sql"
    path.write_text(
        "CREATE FUNCTION syncpipe_internal.added_later() RETURNS int LANGUAGE sql "
        "SET search_path = pg_catalog AS 'SELECT 1';\n" + path.read_text()
    )
    deployed = invoke(["deploy", "--json"], dsn=deployed_db, env={"SYNCPIPE_SQL_DIR": str(sql_dir)})
    assert [f["file"] for f in deployed.json()["deploy"]["files"] if f["status"] == "applied"] == [
        "sql/functions/050_lineage.sql"
    ]
    assert privileges(deployed_db) == ALLOWED


def test_a_non_superuser_owner_runs_everything(invoke: Invoke, pg_server: str) -> None:
    """On the platform Supabase's `postgres` is no superuser: deploy, the full job, verify and
    the RPC entry points (as service_role) all work for such an owner, with the same
    allow-list."""
    from psycopg import sql as psql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from tests.conftest import create_database, drop_database
    from tests.supabase import OWNER, make_supabase_like

    name = create_database(pg_server)
    try:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(
                psql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    psql.Identifier(name), psql.Identifier(OWNER)
                )
            )
        params = conninfo_to_dict(pg_server)
        params["dbname"] = name
        make_supabase_like(make_conninfo(**params), owner=OWNER)
        params["user"] = OWNER
        dsn = make_conninfo(**params)
        sample = ROOT / "data"
        invoke(["deploy", "--full"], dsn=dsn, env={"SYNCPIPE_DATA_DIR": str(sample)})
        invoke(["verify"], dsn=dsn)
        assert privileges(dsn) == ALLOWED
        assert one(dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        with psycopg.connect(dsn) as conn:
            conn.execute("SET ROLE service_role")
            row = conn.execute("SELECT public.run_unified_merge_batch('{}')").fetchone()
            assert row is not None and row[0]["status"] == "success"
    finally:
        drop_database(pg_server, name)


def test_service_role_writes_and_deletes_source_rows_through_the_triggers(
    invoke: Invoke, deployed_db: str
) -> None:
    """The API's service_role writes the sources; the triggers behind its writes (updated_at
    and changed_xid, the merge's mark, lineage forgotten with a deleted row or page) work in
    the internal schema it has no right on, so they run as their owner."""
    invoke(["load", str(ROOT / "data")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    feed = one(deployed_db, "SELECT supabase_uuid::text FROM new_agents LIMIT 1")
    page = one(
        deployed_db,
        "SELECT research_uuid::text FROM unified_company_member GROUP BY 1 ORDER BY 1 LIMIT 1",
    )
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute(
            "INSERT INTO public.new_agents (supabase_uuid, full_name, email_clean, team_id) "
            "VALUES ('00000000-0000-4000-8000-0000000000aa', 'Api Writer', '[\"api@x.io\"]', 't')"
        )
        conn.execute(
            "UPDATE public.new_agents SET full_name = 'Api Writer Two' "
            "WHERE supabase_uuid = '00000000-0000-4000-8000-0000000000aa'"
        )
        conn.execute("DELETE FROM public.new_agents WHERE supabase_uuid = %s", (feed,))
        conn.execute("DELETE FROM bronze.company_info_raw WHERE research_uuid = %s", (page,))
        conn.commit()
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM unified_agent_sources s WHERE s.source = 'new_agents' AND "
            "s.source_id = %s",
            (feed,),
        )
        == 0
    )
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM unified_agent_sources s LEFT JOIN unified_company_member m "
            "ON m.id::text = s.source_id WHERE s.source = 'company_member' AND m.id IS NULL",
        )
        == 0
    )
    merged = invoke(["merge", "--json"], dsn=deployed_db).json()["merge"]
    assert merged["pending_new_agents"] == 1
