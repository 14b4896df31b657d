"""Fingerprints of database objects, read from the catalog.

PostgreSQL stores functions and policies re-formatted, so source text cannot be compared with
what the server holds. Instead deploy records each object's catalog definition right after it
applies the SQL, and verify compares the live catalog with that record: catalog with catalog.
Definitions are read with an empty search_path so every name comes out schema-qualified.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg

_SORTED_ACL = "(SELECT coalesce(string_agg(a::text, ',' ORDER BY a::text), '') FROM unnest({}) a)"

_FINGERPRINT_SQL = f"""
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)
),
ext AS (
    SELECT objid FROM pg_depend WHERE deptype = 'e'
)
SELECT 'table', format('%%I.%%I', n.nspname, c.relname),
       concat_ws(E'\\n', 'kind=' || c.relkind::text, 'rls=' || c.relrowsecurity::text,
                 'force_rls=' || c.relforcerowsecurity::text,
                 'owner=' || pg_get_userbyid(c.relowner),
                 'acl=' || {_SORTED_ACL.format("c.relacl")})
FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'column', format('%%I.%%I.%%I', n.nspname, c.relname, a.attname),
       concat_ws(' ', format_type(a.atttypid, a.atttypmod),
                 CASE WHEN a.attnotnull THEN 'not null' END,
                 CASE WHEN a.attidentity <> '' THEN 'identity ' || a.attidentity::text END,
                 'default ' || pg_get_expr(d.adbin, d.adrelid))
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN ns n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
  AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'index', format('%%I.%%I.%%I', n.nspname, t.relname, c.relname), pg_get_indexdef(c.oid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN ns n ON n.oid = c.relnamespace
WHERE c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'constraint', format('%%I.%%I.%%I', n.nspname, t.relname, co.conname),
       pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN pg_class t ON t.oid = co.conrelid JOIN ns n ON n.oid = t.relnamespace
UNION ALL
SELECT 'function',
       format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       concat_ws(E'\\n', pg_get_functiondef(p.oid),
                 'security_definer=' || p.prosecdef::text,
                 'config=' || coalesce(array_to_string(p.proconfig, ','), ''),
                 'owner=' || pg_get_userbyid(p.proowner),
                 'acl=' || {_SORTED_ACL.format("p.proacl")})
FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace
WHERE p.prokind IN ('f', 'p') AND p.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'trigger', format('%%I.%%I.%%I', n.nspname, c.relname, t.tgname),
       pg_get_triggerdef(t.oid) || E'\\nenabled=' || t.tgenabled::text
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal
UNION ALL
SELECT 'policy', format('%%I.%%I.%%I', p.schemaname, p.tablename, p.policyname),
       concat_ws(E'\\n', 'permissive=' || p.permissive,
                 'roles=' || (SELECT string_agg(r, ',' ORDER BY r) FROM unnest(p.roles) r),
                 'cmd=' || p.cmd, 'using=' || coalesce(p.qual, ''),
                 'check=' || coalesce(p.with_check, ''))
FROM pg_policies p WHERE p.schemaname = ANY(%(schemas)s)
"""

#: Schemas of syncpipe's own objects that the API does not expose (functions live there).
INTERNAL_SCHEMAS = ("syncpipe_internal",)

#: The order object kinds are listed in reports.
OBJECT_TYPES = ("table", "column", "constraint", "index", "function", "trigger", "policy")


@dataclass(frozen=True)
class CatalogObject:
    """An object as the catalog describes it."""

    object_type: str
    identity: str
    definition: str

    @property
    def fingerprint(self) -> str:
        """md5 of the catalog definition."""
        return hashlib.md5(self.definition.encode(), usedforsecurity=False).hexdigest()

    @property
    def key(self) -> tuple[str, str]:
        """(object_type, identity)."""
        return (self.object_type, self.identity)

    @property
    def label(self) -> str:
        """``function public.f(text)``: how reports name it."""
        return f"{self.object_type} {self.identity}"


def read_catalog(
    conn: psycopg.Connection[Any], schemas: list[str]
) -> dict[tuple[str, str], CatalogObject]:
    """Every object in ``schemas`` and in syncpipe's internal schema (extension members
    excluded), keyed by (type, identity)."""
    schemas = [*schemas, *(s for s in INTERNAL_SCHEMAS if s not in schemas)]
    with conn.transaction():
        previous = conn.execute("SELECT current_setting('search_path')").fetchone()
        conn.execute("SELECT set_config('search_path', '', true)")
        rows = conn.execute(_FINGERPRINT_SQL.encode(), {"schemas": schemas}).fetchall()
        conn.execute(
            "SELECT set_config('search_path', %s, true)", (previous[0] if previous else "",)
        )
    objects = [CatalogObject(str(t), str(i), str(d)) for t, i, d in rows]
    return {o.key: o for o in objects}


def save_snapshot(
    conn: psycopg.Connection[Any], objects: dict[tuple[str, str], CatalogObject], deploy_id: int
) -> None:
    """Replace the stored snapshot with ``objects`` (inside the caller's transaction)."""
    conn.execute("DELETE FROM syncpipe.catalog_snapshot")
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY syncpipe.catalog_snapshot"
            " (object_type, identity, fingerprint, definition, deploy_id) FROM STDIN"
        ) as copy,
    ):
        for obj in objects.values():
            copy.write_row(
                (obj.object_type, obj.identity, obj.fingerprint, obj.definition, deploy_id)
            )


def load_snapshot(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], CatalogObject]:
    """The snapshot the last deploy recorded."""
    rows = conn.execute(
        "SELECT object_type, identity, definition FROM syncpipe.catalog_snapshot"
    ).fetchall()
    return {(str(t), str(i)): CatalogObject(str(t), str(i), str(d)) for t, i, d in rows}
