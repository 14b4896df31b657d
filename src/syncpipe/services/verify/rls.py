"""The RLS behaviour group: row level security tried as each API role.

Inside a transaction that is always rolled back, verify sets the role (the owner would bypass
RLS) and the claims PostgREST would set, then reads and tries to write every table syncpipe
deployed, and reads every other relation an API role may select in an exposed schema (a view
or a materialized view over the agents exposes them whatever the tables' policies say).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from syncpipe.db.queries import qualified, scalar
from syncpipe.services.catalog import CatalogObject
from syncpipe.services.verify.result import VerifyResult

ROLES = ("anon", "authenticated", "service_role")


@dataclass
class _Probe:
    value: Any = None
    error: bool = False
    sqlstate: str | None = None


class RlsBehaviour:
    """Tries reads and writes as each API role (never keeps anything it did)."""

    def __init__(self, user: str, authenticated_reads: list[str]) -> None:
        self.user = user
        self.readable = {t.strip() for t in authenticated_reads}

    def run(
        self,
        conn: psycopg.Connection[Any],
        schemas: list[str],
        snapshot: dict[tuple[str, str], CatalogObject],
        live: dict[tuple[str, str], CatalogObject],
        result: VerifyResult,
    ) -> None:
        """Probe syncpipe's tables, then every other relation the API roles may select."""
        if self._check_rls_behaviour(conn, schemas, snapshot, live, result):
            self._probe_others(conn, schemas, snapshot, result)

    def _check_rls_behaviour(
        self,
        conn: psycopg.Connection[Any],
        schemas: list[str],
        snapshot: dict[tuple[str, str], CatalogObject],
        live: dict[tuple[str, str], CatalogObject],
        result: VerifyResult,
    ) -> bool:
        tables = sorted(
            i
            for (t, i) in snapshot
            if t == "table"
            and (t, i) in live
            and i.split(".")[0] in schemas
            and "kind=r" in snapshot[(t, i)].definition
        )
        missing_roles = [
            r
            for r in ROLES
            if not scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (r,))
        ]
        cannot = [
            r
            for r in ROLES
            if r not in missing_roles
            and not scalar(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (r,))
        ]
        if missing_roles or cannot:
            why = (
                f"roles {', '.join(missing_roles)} are missing"
                if missing_roles
                else f"{self.user} cannot SET ROLE to {', '.join(cannot)}"
            )
            result.add(
                "rls",
                "behaviour",
                "row level security",
                "skip",
                f"RLS behaviour not tried: {why}.",
                "Run `syncpipe deploy` as a user who may create and grant the roles.",
            )
            return False
        readable = self.readable
        with conn.transaction(force_rollback=True):
            conn.execute(
                "SELECT set_config('request.jwt.claims', %s, true)",
                ('{"sub": "00000000-0000-4000-8000-000000000000", "role": "authenticated"}',),
            )
            for table in tables:
                self._probe_table(conn, table, table in readable, result)
        return True

    def _probe_others(
        self,
        conn: psycopg.Connection[Any],
        schemas: list[str],
        snapshot: dict[tuple[str, str], CatalogObject],
        result: VerifyResult,
    ) -> None:
        """Any other table, view, materialized view or foreign table of an exposed schema that
        an API role may select: read it as that role; rows seen are rows exposed."""
        ours = {i for (t, i) in snapshot if t == "table"}
        rows = conn.execute(
            """
            SELECT format('%%I.%%I', n.nspname, c.relname), r
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                 unnest(ARRAY['anon', 'authenticated']) r
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY(%s)
              AND c.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')
              AND has_table_privilege(r, c.oid, 'SELECT')
            ORDER BY 1, 2
            """,
            (schemas,),
        ).fetchall()
        with conn.transaction(force_rollback=True):
            conn.execute(
                "SELECT set_config('request.jwt.claims', %s, true)",
                ('{"sub": "00000000-0000-4000-8000-000000000000", "role": "authenticated"}',),
            )
            for relation, role in rows:
                if relation in ours:
                    continue  # probed above, with what each role should see
                if role == "authenticated" and relation in self.readable:
                    continue
                label = f"relation {relation} as {role}"
                probe = self._try(
                    conn,
                    role,
                    sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1000) x").format(
                        qualified(relation)
                    ),
                )
                if not probe.error and probe.value:
                    result.add(
                        "rls",
                        "read",
                        label,
                        "fail",
                        f"{role} reads rows of {relation} (an exposed schema); nothing outside "
                        "SYNCPIPE_AUTHENTICATED_READ_TABLES may be read by the API roles.",
                        f"REVOKE SELECT ON {relation} FROM anon, authenticated;  -- or, for a "
                        f"view: ALTER VIEW {relation} SET (security_invoker = on);",
                    )
                else:
                    result.add("rls", "read", label, "pass", f"{role} reads no row of it")

    def _probe_table(
        self, conn: psycopg.Connection[Any], table: str, auth_reads: bool, result: VerifyResult
    ) -> None:
        ident = qualified(table)
        sample = conn.execute(sql.SQL("SELECT t::text FROM {} t LIMIT 1").format(ident)).fetchone()
        has_rows = sample is not None
        column = scalar(
            conn,
            """
            SELECT quote_ident(attname) FROM pg_attribute
            WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
              AND attidentity = '' AND attgenerated = '' ORDER BY attnum LIMIT 1
            """,
            (table,),
        )
        expectations = {"anon": False, "authenticated": auth_reads, "service_role": True}
        for role, may_read in expectations.items():
            label = f"table {table} as {role}"
            reads = self._try(conn, role, sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(ident))
            if reads.error:
                sees = False
            elif has_rows:
                sees = bool(reads.value)
            else:
                sees = self._policy_allows(conn, table, role, "SELECT")
            basis = "" if has_rows else " (table empty: judged from its policies)"
            if sees == may_read:
                verb = "can read" if sees else "cannot read"
                result.add("rls", "read", label, "pass", f"{role} {verb} {table}{basis}")
            else:
                verb = "can read" if sees else "cannot read"
                should = "should" if may_read else "should not"
                result.add(
                    "rls",
                    "read",
                    label,
                    "fail",
                    f"{role} {verb} {table} but {should}{basis}.",
                    "Fix the table's policies and grants in sql/rls/ and deploy.",
                )
            if role == "service_role":
                continue
            wrote = []
            if column is not None:
                upd = self._try(
                    conn,
                    role,
                    sql.SQL("UPDATE {} SET {} = {}").format(
                        ident, sql.SQL(column), sql.SQL(column)
                    ),
                    rowcount=True,
                )
                if not upd.error and upd.value:
                    wrote.append(f"update {upd.value} row(s)")
            dele = self._try(conn, role, sql.SQL("DELETE FROM {}").format(ident), rowcount=True)
            if not dele.error and dele.value:
                wrote.append(f"delete {dele.value} row(s)")
            if sample is not None:
                ins = self._try(
                    conn,
                    role,
                    sql.SQL("INSERT INTO {} OVERRIDING SYSTEM VALUE SELECT ({}::{}).*").format(
                        ident, sql.Literal(sample[0]), ident
                    ),
                    rowcount=True,
                )
                if not ins.error or ins.sqlstate == "23505":
                    wrote.append("insert rows")
            elif self._policy_allows(conn, table, role, "INSERT"):
                wrote.append("insert rows (by policy)")
            label = f"table {table} as {role} (write)"
            if wrote:
                result.add(
                    "rls",
                    "write",
                    label,
                    "fail",
                    f"{role} could {' and '.join(wrote)} in {table}.",
                    "Fix the table's policies and grants in sql/rls/ and deploy.",
                )
            else:
                result.add("rls", "write", label, "pass", f"{role} cannot write to {table}")

    def _try(
        self,
        conn: psycopg.Connection[Any],
        role: str,
        query: sql.Composed,
        *,
        rowcount: bool = False,
    ) -> _Probe:
        try:
            # Every probe runs in a savepoint that is always rolled back: nothing it does stays.
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                conn.execute("SET LOCAL statement_timeout = '5s'")
                cur = conn.execute(query)
                value = cur.rowcount if rowcount else (cur.fetchone() or [None])[0]
            return _Probe(value=value)
        except pg_errors.QueryCanceled:
            return _Probe(value=-1)  # it was busy writing rows: treat as "could write"
        except psycopg.Error as exc:
            return _Probe(error=True, sqlstate=exc.sqlstate)

    def _policy_allows(
        self, conn: psycopg.Connection[Any], table: str, role: str, cmd: str
    ) -> bool:
        if role == "service_role" and scalar(
            conn, "SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'"
        ):
            return True
        privilege = "SELECT" if cmd == "SELECT" else "INSERT"
        return bool(
            scalar(
                conn,
                """
            SELECT has_table_privilege(%(role)s, %(table)s, %(priv)s) AND EXISTS (
                SELECT 1 FROM pg_policies
                WHERE format('%%I.%%I', schemaname, tablename) = %(table)s
                  AND cmd IN (%(cmd)s, 'ALL')
                  AND (%(role)s = ANY(roles) OR 'public' = ANY(roles)))
            """,
                {"role": role, "table": table, "priv": privilege, "cmd": cmd},
            )
        )
