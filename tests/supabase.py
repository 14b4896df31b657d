"""A database prepared the way a Supabase project prepares one, for the tests.

From the facts of Supabase's own set-up (its init scripts and migrations): the API roles with
Supabase's attributes (``anon`` and ``authenticated`` NOLOGIN, ``service_role`` NOLOGIN
BYPASSRLS, an ``authenticator`` login role granted all three, short statement timeouts for the
API roles), the ``extensions`` and ``auth`` schemas (auth functions owned by
``supabase_auth_admin``), USAGE on ``public`` for the API roles, and Supabase's default
privileges in ``public``: ALL on every new table, function and sequence to anon,
authenticated and service_role. What would be exposed on Supabase is exposed here.

Roles belong to the whole server, so they are created once per server, safely when several
test processes do it at the same moment; everything else is per database.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import sql

#: Role -> CREATE ROLE attributes, as Supabase creates them.
ROLES = {
    "anon": "NOLOGIN NOINHERIT",
    "authenticated": "NOLOGIN NOINHERIT",
    "service_role": "NOLOGIN NOINHERIT BYPASSRLS",
    "authenticator": "LOGIN NOINHERIT",
    "supabase_auth_admin": "NOLOGIN NOINHERIT",
    # Supabase's `postgres` as the platform has it: no superuser (tests/test_security.py).
    "syncpipe_test_owner": "LOGIN NOINHERIT CREATEROLE CREATEDB BYPASSRLS",
}

#: The stand-in for Supabase's non-superuser `postgres` role.
OWNER = "syncpipe_test_owner"

_ROLE_SETTINGS = (
    "GRANT anon, authenticated, service_role TO authenticator",
    f"GRANT anon, authenticated, service_role TO {OWNER}",
    "ALTER ROLE anon SET statement_timeout = '3s'",
    "ALTER ROLE authenticated SET statement_timeout = '8s'",
)

_CLAIM = (
    "coalesce(nullif(current_setting('request.jwt.claim.{c}', true), ''), "
    "(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> '{c}'))"
)

#: Per database: what a new Supabase project holds before the user deploys anything.
DATABASE_SETUP = (
    "CREATE SCHEMA IF NOT EXISTS extensions",
    "GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role",
    "CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION supabase_auth_admin",
    "GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role",
    "SET ROLE supabase_auth_admin",
    "CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$ SELECT "
    + _CLAIM.format(c="sub")
    + "::uuid $f$",
    "CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $f$ SELECT "
    + _CLAIM.format(c="role")
    + " $f$",
    "CREATE OR REPLACE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $f$ SELECT "
    + _CLAIM.format(c="email")
    + " $f$",
    "CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $f$ SELECT "
    "coalesce(nullif(current_setting('request.jwt.claim', true), ''), "
    "nullif(current_setting('request.jwt.claims', true), ''))::jsonb $f$",
    "GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.email(), auth.jwt() "
    "TO anon, authenticated, service_role",
    "RESET ROLE",
    "GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role",
    # Supabase's default privileges: whatever the database owner creates in public is
    # granted to the three API roles.
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES "
    "TO anon, authenticated, service_role",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS "
    "TO anon, authenticated, service_role",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES "
    "TO anon, authenticated, service_role",
)


def ensure_roles(admin_dsn: str) -> None:
    """Create Supabase's roles on the server where missing (race-safe across processes)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        # (test processes share the admin database: one at a time, or ALTER ROLE collides)
        conn.execute("SELECT pg_advisory_lock(5381, 1)")
        for role, attributes in ROLES.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if exists:
                continue
            # (another test process may have created it a moment ago)
            with contextlib.suppress(
                psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation
            ):
                conn.execute(f"CREATE ROLE {role} {attributes}".encode())
        for statement in _ROLE_SETTINGS:
            conn.execute(statement.encode())
        conn.execute("SELECT pg_advisory_unlock(5381, 1)")


def make_supabase_like(dsn: str, *, owner: str | None = None) -> None:
    """Prepare the (empty) database at ``dsn`` the way a new Supabase project is; with
    ``owner``, for that (non-superuser) role to deploy into, as Supabase's `postgres` does."""
    with psycopg.connect(dsn) as conn:
        for statement in DATABASE_SETUP:
            if owner and statement.startswith("ALTER DEFAULT PRIVILEGES"):
                statement = statement.replace(
                    "ALTER DEFAULT PRIVILEGES", f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner}"
                )
            conn.execute(statement.encode())
        if owner:
            conn.execute(f"GRANT ALL ON SCHEMA extensions TO {owner}".encode())
            conn.execute(f"ALTER SCHEMA public OWNER TO {owner}".encode())
        # Supabase preinstalls these in `extensions` (where the server ships them: the embedded
        # server does not).
        for extension in ("uuid-ossp", "pgcrypto"):
            if conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = %s", (extension,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA extensions").format(
                        sql.Identifier(extension)
                    )
                )


def api_role_privileges(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    """Every (role, object, privilege) by which anon or authenticated may execute a function or
    procedure or use a sequence, outside PostgreSQL's own schemas and extensions' members (a
    privilege counts even where the schema is closed to the role: defence in depth)."""
    conn.execute("SELECT set_config('search_path', '', true)")  # names come out qualified
    rows = conn.execute(
        """
        WITH roles(r) AS (VALUES ('anon'), ('authenticated'))
        SELECT r, p.oid::regprocedure::text, 'EXECUTE'
        FROM roles, pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND p.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')
          AND has_function_privilege(r, p.oid, 'EXECUTE')
        UNION ALL
        SELECT r, c.oid::regclass::text, priv
        FROM roles, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) priv
        WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND has_sequence_privilege(r, c.oid, priv)
        ORDER BY 1, 2, 3
        """
    ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]
