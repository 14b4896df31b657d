"""Security lints: what Supabase's Security Advisor reports, and syncpipe's own rules.

Each lint is one ``Lint``: its name and level as the advisor shows them (lint names and numbers
are Supabase's, from its public database linter), why it matters, and one catalog query that
returns the offending objects as ``(object, detail, fix)``. A new lint is one more entry in
``LINTS``. The queries only read the catalog; they take these parameters:

* ``schemas``: the schemas the API exposes (setting SYNCPIPE_EXPOSED_SCHEMAS; Supabase's own
  lints read ``pgrst.db_schemas``, which plain PostgreSQL does not have);
* ``readable``: the tables authenticated is meant to read (SYNCPIPE_AUTHENTICATED_READ_TABLES);
* ``allowed``: the functions anon and authenticated may execute (the auth helpers, plus
  SYNCPIPE_API_ALLOWED_FUNCTIONS);
* ``internal``: syncpipe's schemas that the API must not reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from syncpipe.services.verify.result import STATUS_OF_LEVEL, Level, VerifyResult

#: Schemas that belong to PostgreSQL or to Supabase's own services (the advisor skips them).
SYSTEM_SCHEMAS = (
    "pg_catalog",
    "information_schema",
    "pg_toast",
    "auth",
    "extensions",
    "graphql",
    "graphql_public",
    "storage",
    "realtime",
    "vault",
    "pgsodium",
    "pgsodium_masks",
    "net",
    "cron",
    "supabase_functions",
    "supabase_migrations",
    "pgbouncer",
    "pgtle",
    "repack",
    "topology",
    "tiger",
)

_USER_SCHEMA = (
    "n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
    "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'"
)
_NOT_EXTENSION = "{oid} NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')"
_API_READS = (
    "(has_table_privilege('anon', c.oid, 'SELECT') "
    "OR has_table_privilege('authenticated', c.oid, 'SELECT'))"
)
_TABLE = "format('%%I.%%I', n.nspname, c.relname)"
_FUNCTION = (
    "format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))"
)


@dataclass(frozen=True)
class Lint:
    """One security rule: a name, a level, why it matters and the query that finds it."""

    name: str
    level: Level
    why: str
    query: str
    #: Supabase's lint number, or None for syncpipe's own rules.
    number: str | None = None
    #: "table", "function", ...: how a finding's object is named.
    kind: str = "table"
    #: Only when this extension is installed (pg_graphql for the GraphQL lints).
    needs_extension: str | None = None

    @property
    def label(self) -> str:
        """``0013 rls_disabled_in_public`` or ``syncpipe api_role_privilege``."""
        return f"{self.number or 'syncpipe'} {self.name}"


LINTS: tuple[Lint, ...] = (
    Lint(
        "rls_disabled_in_public",
        "ERROR",
        "row level security is off on a table the API exposes: anon and authenticated read "
        "and write it as their grants allow",
        f"""
        SELECT {_TABLE}, 'RLS is disabled', format('ALTER TABLE %%s ENABLE ROW LEVEL SECURITY;',
               {_TABLE})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND NOT c.relrowsecurity AND {_API_READS}
          AND n.nspname = ANY(%(schemas)s)
        """,
        number="0013",
    ),
    Lint(
        "policy_exists_rls_disabled",
        "ERROR",
        "the table has policies, but row level security is off, so they do nothing",
        f"""
        SELECT {_TABLE}, 'policies exist, RLS is disabled',
               format('ALTER TABLE %%s ENABLE ROW LEVEL SECURITY;', {_TABLE})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relrowsecurity AND {_USER_SCHEMA}
          AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
        """,
        number="0007",
    ),
    Lint(
        "rls_enabled_no_policy",
        "INFO",
        "row level security is on but no policy exists: only the owner and BYPASSRLS roles "
        "can use the table",
        f"""
        SELECT {_TABLE}, 'RLS is enabled, no policy', ''
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND c.relrowsecurity AND {_USER_SCHEMA}
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
        """,
        number="0008",
    ),
    Lint(
        "security_definer_view",
        "ERROR",
        "the view reads its tables with its owner's rights and policies, not the caller's: "
        "anon and authenticated see what the owner sees",
        f"""
        SELECT {_TABLE}, 'a view without security_invoker, readable by the API',
               format('ALTER VIEW %%s SET (security_invoker = on);  -- or REVOKE SELECT ON %%s '
                      'FROM anon, authenticated;', {_TABLE}, {_TABLE})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'v' AND n.nspname = ANY(%(schemas)s) AND {_API_READS}
          AND {_NOT_EXTENSION.format(oid="c.oid")}
          AND NOT coalesce(lower(c.reloptions::text)::text[], '{{}}')
                  && ARRAY['security_invoker=1', 'security_invoker=true',
                           'security_invoker=yes', 'security_invoker=on']
        """,
        number="0010",
        kind="view",
    ),
    Lint(
        "function_search_path_mutable",
        "WARN",
        "the function resolves names through its caller's search_path, so a caller can make "
        "it run an object of their own",
        f"""
        SELECT {_FUNCTION}, 'no search_path is set',
               format('ALTER FUNCTION %%s SET search_path = pg_catalog, extensions;',
                      {_FUNCTION})
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_USER_SCHEMA} AND {_NOT_EXTENSION.format(oid="p.oid")}
          AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{{}}')) c
                          WHERE c LIKE 'search_path=%%')
        """,
        number="0011",
        kind="function",
    ),
    Lint(
        "extension_in_public",
        "WARN",
        "its functions sit in an exposed schema, callable through the API and on every search_path",
        """
        SELECT e.extname, 'installed in schema public',
               format('ALTER EXTENSION %%I SET SCHEMA extensions;', e.extname)
        FROM pg_extension e
        WHERE e.extnamespace = 'public'::regnamespace AND e.extname <> 'plpgsql'
        """,
        number="0014",
        kind="extension",
    ),
    Lint(
        "materialized_view_in_api",
        "WARN",
        "a materialized view has no row level security: whoever may select it reads all of it",
        f"""
        SELECT {_TABLE}, 'a materialized view readable by the API',
               format('REVOKE SELECT ON %%s FROM anon, authenticated;', {_TABLE})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'm' AND n.nspname = ANY(%(schemas)s) AND {_API_READS}
          AND {_NOT_EXTENSION.format(oid="c.oid")}
        """,
        number="0016",
        kind="materialized view",
    ),
    Lint(
        "rls_policy_always_true",
        "WARN",
        "a policy for anon or authenticated lets them change every row (its expression is "
        "always true)",
        f"""
        SELECT format('%%s.%%s', {_TABLE}, pol.polname),
               format('%%s for %%s is always true', CASE pol.polcmd WHEN 'a' THEN 'INSERT'
                      WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                      (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END,
                                         ', ') FROM unnest(pol.polroles) r)),
               'Write a USING / WITH CHECK expression that limits the rows, '
               || '(select auth.uid()) = owner_id for instance.'
        FROM pg_policy pol
        JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL (
            SELECT regexp_replace(lower(coalesce(pg_get_expr(pol.polqual, pol.polrelid), '')),
                                  '\\s', '', 'g') AS q,
                   regexp_replace(lower(coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid),
                                                 '')), '\\s', '', 'g') AS w
        ) e
        WHERE c.relkind = 'r' AND c.relrowsecurity AND pol.polpermissive AND {_USER_SCHEMA}
          AND (pol.polroles = ARRAY[0::oid]
               OR EXISTS (SELECT 1 FROM unnest(pol.polroles) r
                          WHERE r::regrole::text IN ('anon', 'authenticated')))
          AND ((pol.polcmd IN ('w', 'd', '*')
                AND (e.q IN ('true', '(true)', '1=1', '(1=1)') OR pol.polqual IS NULL))
               OR e.w IN ('true', '(true)', '1=1', '(1=1)')
               OR (pol.polwithcheck IS NULL AND pol.polcmd = 'a')
               OR (pol.polwithcheck IS NULL AND pol.polcmd IN ('w', '*')
                   AND e.q IN ('true', '(true)', '1=1', '(1=1)')))
        """,
        number="0024",
        kind="policy",
    ),
    Lint(
        "anon_security_definer_function_executable",
        "WARN",
        "anyone with the public anon key can run it by POST /rest/v1/rpc with its owner's rights",
        f"""
        SELECT {_FUNCTION}, 'SECURITY DEFINER, executable by anon',
               format('REVOKE EXECUTE ON FUNCTION %%s FROM PUBLIC, anon;', {_FUNCTION})
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef AND n.nspname = ANY(%(schemas)s)
          AND has_function_privilege('anon', p.oid, 'EXECUTE')
        """,
        number="0028",
        kind="function",
    ),
    Lint(
        "authenticated_security_definer_function_executable",
        "WARN",
        "any signed-in user can run it by POST /rest/v1/rpc with its owner's rights",
        f"""
        SELECT {_FUNCTION}, 'SECURITY DEFINER, executable by authenticated',
               format('REVOKE EXECUTE ON FUNCTION %%s FROM PUBLIC, authenticated;', {_FUNCTION})
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef AND n.nspname = ANY(%(schemas)s)
          AND has_function_privilege('authenticated', p.oid, 'EXECUTE')
        """,
        number="0029",
        kind="function",
    ),
    Lint(
        "auth_rls_initplan",
        "WARN",
        "the policy calls auth.<function>() or current_setting() once per row instead of once "
        "per query",
        f"""
        SELECT format('%%s.%%s', {_TABLE}, pol.polname),
               'calls auth.<function>() or current_setting() per row',
               'Wrap the call in a subquery: (select auth.uid()) instead of auth.uid().'
        FROM pg_policy pol
        JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL (
            SELECT coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') || ' '
                   || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '') AS x
        ) e
        WHERE c.relrowsecurity AND {_USER_SCHEMA}
          AND EXISTS (
              SELECT 1 FROM unnest(ARRAY['auth.uid()', 'auth.jwt()', 'auth.role()',
                                         'auth.email()', 'current_setting(']) f
              WHERE strpos(e.x, f) > 0 AND strpos(lower(e.x), 'select ' || f) = 0)
        """,
        number="0003",
        kind="policy",
    ),
    Lint(
        "multiple_permissive_policies",
        "WARN",
        "several permissive policies for one role and action are all evaluated for every row",
        f"""
        SELECT format('%%s (%%s, %%s)', {_TABLE}, r.rolname, a.cmd),
               'permissive policies ' || string_agg(pol.polname, ', ' ORDER BY pol.polname),
               'Merge them into one policy per role and action.'
        FROM pg_policy pol
        JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_roles r ON pol.polroles @> ARRAY[r.oid] OR pol.polroles = ARRAY[0::oid]
        CROSS JOIN LATERAL unnest(CASE pol.polcmd WHEN 'r' THEN ARRAY['SELECT']
                                       WHEN 'a' THEN ARRAY['INSERT'] WHEN 'w' THEN ARRAY['UPDATE']
                                       WHEN 'd' THEN ARRAY['DELETE']
                                       ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END)
            AS a(cmd)
        WHERE c.relkind = 'r' AND pol.polpermissive AND {_USER_SCHEMA}
          AND r.rolname NOT LIKE 'pg\\_%%' AND NOT r.rolbypassrls
          AND {_NOT_EXTENSION.format(oid="c.oid")}
        GROUP BY n.nspname, c.relname, r.rolname, a.cmd
        HAVING count(*) > 1
        """,
        number="0006",
    ),
    Lint(
        "pg_graphql_anon_table_exposed",
        "WARN",
        "anyone with the public anon key sees the object's name and columns in the GraphQL schema",
        f"""
        SELECT {_TABLE}, 'anon may select a column',
               format('REVOKE SELECT ON %%s FROM anon;', {_TABLE})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'v', 'm', 'f') AND {_USER_SCHEMA}
          AND EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                        AND has_column_privilege('anon', c.oid, a.attnum, 'SELECT'))
        """,
        number="0026",
        needs_extension="pg_graphql",
    ),
    Lint(
        "pg_graphql_authenticated_table_exposed",
        "WARN",
        "every signed-in user sees the object's name and columns in the GraphQL schema",
        f"""
        SELECT {_TABLE}, 'authenticated may select a column',
               format('REVOKE SELECT ON %%s FROM authenticated;', {_TABLE})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'v', 'm', 'f') AND {_USER_SCHEMA}
          AND {_TABLE} <> ALL(%(readable)s)
          AND EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                        AND has_column_privilege('authenticated', c.oid, a.attnum, 'SELECT'))
        """,
        number="0027",
        needs_extension="pg_graphql",
    ),
    # -- syncpipe's own ---------------------------------------------------------------------
    Lint(
        "api_role_privilege",
        "ERROR",
        "anon or authenticated may execute a function or use a sequence beyond the allow-list "
        "(POST /rest/v1/rpc/<name> with the public key)",
        """
        SELECT format('%%s.%%s(%%s) for %%s', n.nspname, p.proname,
                      pg_get_function_identity_arguments(p.oid), r),
               'EXECUTE is granted',
               format('REVOKE EXECUTE ON FUNCTION %%I.%%I(%%s) FROM PUBLIC, anon, authenticated;',
                      n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             unnest(ARRAY['anon', 'authenticated']) r
        WHERE (n.nspname = ANY(%(schemas)s) OR n.nspname = ANY(%(internal)s))
          AND p.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')
          AND has_function_privilege(r, p.oid, 'EXECUTE')
          AND format('%%s.%%s', n.nspname, p.proname) <> ALL(%(allowed)s)
        UNION ALL
        SELECT format('%%s.%%s (%%s) for %%s', n.nspname, c.relname, priv, r),
               priv || ' is granted on the sequence',
               format('REVOKE ALL ON SEQUENCE %%I.%%I FROM anon, authenticated;',
                      n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             unnest(ARRAY['anon', 'authenticated']) r,
             unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) priv
        WHERE c.relkind = 'S' AND (n.nspname = ANY(%(schemas)s) OR n.nspname = ANY(%(internal)s))
          AND has_sequence_privilege(r, c.oid, priv)
        """,
        kind="privilege",
    ),
    Lint(
        "internal_schema_reachable",
        "ERROR",
        "an API role may use or create objects in a schema of syncpipe's internals (a "
        "function planted there would run with the merge's rights)",
        """
        SELECT format('schema %%s for %%s', s, r), priv || ' is granted',
               format('REVOKE ALL ON SCHEMA %%I FROM PUBLIC, anon, authenticated, service_role;',
                      s)
        FROM unnest(%(internal)s::text[]) s,
             unnest(ARRAY['anon', 'authenticated', 'service_role']) r,
             unnest(ARRAY['USAGE', 'CREATE']) priv
        WHERE to_regnamespace(s) IS NOT NULL
          AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
          AND has_schema_privilege(r, s, priv)
        UNION ALL
        SELECT format('%%s %%s.%%s', CASE WHEN o.kind = 'f' THEN 'function' ELSE 'relation' END,
                      o.nspname, o.name),
               'owned by ' || pg_get_userbyid(o.owner) || ', not by the schema''s owner',
               'Find out who created it, then drop it.'
        FROM (SELECT 'f' AS kind, p.proname AS name, p.proowner AS owner, n.nspname, n.nspowner
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              UNION ALL
              SELECT 'r', c.relname, c.relowner, n.nspname, n.nspowner
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace) o
        WHERE o.nspname = ANY(%(internal)s) AND o.owner <> o.nspowner
        """,
        kind="schema",
    ),
    Lint(
        "rls_enabled",
        "ERROR",
        "syncpipe keeps row level security on every table of an exposed schema, so a stray "
        "grant alone opens nothing",
        f"""
        SELECT {_TABLE}, 'RLS is disabled on a table of an exposed schema',
               format('ALTER TABLE %%s ENABLE ROW LEVEL SECURITY;', {_TABLE})
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relrowsecurity AND n.nspname = ANY(%(schemas)s)
          AND {_NOT_EXTENSION.format(oid="c.oid")}
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
        """,
    ),
)


def run_lints(
    conn: psycopg.Connection[Any],
    result: VerifyResult,
    params: dict[str, Any],
    lints: tuple[Lint, ...] = LINTS,
) -> None:
    """Run every lint; each finding becomes a check with the lint's name, level and fix, and a
    lint with no finding one passing check."""
    installed = {str(r[0]) for r in conn.execute("SELECT extname FROM pg_extension").fetchall()}
    values = {**params, "system": list(SYSTEM_SCHEMAS)}
    for lint in lints:
        where = f"{lint.label}"
        if lint.needs_extension and lint.needs_extension not in installed:
            result.add(
                "security", lint.name, where, "skip",
                f"{lint.needs_extension} is not installed.", level=lint.level, lint=lint.number,
            )  # fmt: skip
            continue
        rows = conn.execute(lint.query.encode(), values).fetchall()
        for obj, detail, fix in rows:
            result.add(
                "security",
                lint.name,
                f"{lint.kind} {obj}",
                STATUS_OF_LEVEL[lint.level],
                f"{lint.level} {lint.label}: {detail}; {lint.why}.",
                str(fix or ""),
                level=lint.level,
                lint=lint.number,
            )
        if not rows:
            result.add(
                "security", lint.name, where, "pass", "no finding",
                level=lint.level, lint=lint.number,
            )  # fmt: skip
