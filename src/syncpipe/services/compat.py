"""Supabase compatibility on plain PostgreSQL.

Supabase ships the roles ``anon``, ``authenticated`` and ``service_role`` and the functions
``auth.uid()``, ``auth.jwt()`` and ``auth.role()``; RLS policies written for Supabase use them.
On plain PostgreSQL they may be missing, so deploy creates compatible ones, and only those that
are missing: on Supabase itself every check finds the object and nothing is touched. The
functions read ``request.jwt.claims`` the way PostgREST sets it (with the legacy per-claim
settings as a fallback), so policies behave the same on both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from syncpipe.core.errors import ConfigError
from syncpipe.db.queries import scalar
from syncpipe.logs import get_logger

log = get_logger(__name__)

ROLES = ("anon", "authenticated", "service_role")

_ROLE_DDL = {
    "anon": "CREATE ROLE anon NOLOGIN NOINHERIT",
    "authenticated": "CREATE ROLE authenticated NOLOGIN NOINHERIT",
    "service_role": "CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS",
}

_CLAIM = (
    "coalesce(nullif(current_setting('request.jwt.claim.{c}', true), ''), "
    "(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> '{c}'))"
)

_FUNCTION_DDL = {
    "uid": (
        "CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE SET search_path = '' "
        "AS $f$ SELECT " + _CLAIM.format(c="sub") + "::uuid $f$"
    ),
    "role": (
        "CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE SET search_path = '' "
        "AS $f$ SELECT " + _CLAIM.format(c="role") + " $f$"
    ),
    "email": (
        "CREATE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE SET search_path = '' "
        "AS $f$ SELECT " + _CLAIM.format(c="email") + " $f$"
    ),
    "jwt": (
        "CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE SET search_path = '' "
        "AS $f$ SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''), "
        "nullif(current_setting('request.jwt.claims', true), ''))::jsonb $f$"
    ),
}


@dataclass(frozen=True)
class CompatAction:
    """One thing deploy does to make plain PostgreSQL look like Supabase."""

    description: str
    statement: sql.SQL | sql.Composed
    #: Roles are shared by every database of a server: another deploy (to another database)
    #: may create the same role at the same moment. The loser finds it exists and goes on.
    may_exist: bool = False


def plan_compat(conn: psycopg.Connection[Any]) -> list[CompatAction]:
    """What is missing, as actions; ConfigError when a missing piece needs a superuser."""
    row = conn.execute(
        "SELECT current_user, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    me, superuser, createrole = str(row[0]), bool(row[1]), bool(row[2])
    existing = {
        r[0]
        for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)
        ).fetchall()
    }
    actions: list[CompatAction] = []
    missing = [r for r in ROLES if r not in existing]
    if missing and not (superuser or createrole):
        raise ConfigError(
            f"The Supabase roles {', '.join(missing)} are missing and {me} may not create roles; "
            f"ask an administrator to run: {_admin_script(missing, me)}"
        )
    if "service_role" in missing and not superuser:
        raise ConfigError(
            "The role service_role is missing and only a superuser can create it (it needs "
            f"BYPASSRLS); ask an administrator to run: {_admin_script(missing, me)}"
        )
    for role in missing:
        actions.append(
            CompatAction(f"create role {role}", sql.SQL(_ROLE_DDL[role]), may_exist=True)
        )
    if not superuser:
        not_member = [
            r
            for r in ROLES
            if r in missing
            or not scalar(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (r,))
        ]
        if not_member:
            roles = ", ".join(not_member)
            actions.append(
                CompatAction(
                    f"grant {roles} to {me} (so verify can test RLS as each role)",
                    sql.SQL("GRANT {} TO {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, not_member)), sql.Identifier(me)
                    ),
                    may_exist=True,
                )
            )

    has_auth = scalar(conn, "SELECT to_regnamespace('auth') IS NOT NULL")
    if not has_auth:
        actions.append(CompatAction("create schema auth", sql.SQL("CREATE SCHEMA auth")))
    created_functions: list[str] = []
    for name, ddl in _FUNCTION_DDL.items():
        exists = has_auth and scalar(
            conn,
            "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'auth' AND p.proname = %s)",
            (name,),
        )
        if not exists:
            actions.append(CompatAction(f"create function auth.{name}()", sql.SQL(ddl)))
            created_functions.append(f"auth.{name}()")
    if not has_auth:
        actions.append(
            CompatAction(
                "let anon, authenticated and service_role use schema auth",
                sql.SQL("GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role"),
            )
        )
    if created_functions:
        actions.append(
            CompatAction(
                "let anon, authenticated and service_role call the auth functions",
                sql.SQL("GRANT EXECUTE ON FUNCTION {} TO anon, authenticated, service_role").format(
                    sql.SQL(", ".join(created_functions))
                ),
            )
        )
    has_extensions = scalar(conn, "SELECT to_regnamespace('extensions') IS NOT NULL")
    if not has_extensions:
        actions.append(
            CompatAction("create schema extensions", sql.SQL("CREATE SCHEMA extensions"))
        )
        actions.append(
            CompatAction(
                "let anon, authenticated and service_role use schema extensions",
                sql.SQL("GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role"),
            )
        )
    return actions


def apply_compat(conn: psycopg.Connection[Any], actions: list[CompatAction]) -> None:
    """Run the actions inside the caller's transaction."""
    for action in actions:
        if not action.may_exist:
            conn.execute(action.statement)
            continue
        for attempt in range(5):
            try:
                with conn.transaction():  # a savepoint: a duplicate leaves the deploy intact
                    conn.execute(action.statement)
                break
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                log.info("deploy.compat_exists", action=action.description)
                break
            except psycopg.errors.InternalError as exc:
                # "tuple concurrently updated": another deploy changed the same role just now.
                if "concurrently" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))


def _admin_script(missing: list[str], me: str) -> str:
    statements = [_ROLE_DDL[r] for r in missing]
    quoted = '"' + me.replace('"', '""') + '"'
    statements.append(f"GRANT {', '.join(ROLES)} TO {quoted}")
    return "; ".join(statements) + ";"
