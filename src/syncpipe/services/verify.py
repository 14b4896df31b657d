"""Verify: prove the live database is what ``sql/`` and the last deploy say it should be.

Four groups of checks, each a row in the result:

* files: every SQL file is deployed and unchanged since (the ledger's checksums);
* catalog: every object deploy created still exists and matches its catalog fingerprint
  (drift: someone edited a function or a policy by hand); unknown objects on syncpipe's tables;
* security: the Supabase advisor lints that apply here, re-implemented on the catalog;
* rls: row level security behaviour, tried under ``SET ROLE`` as anon, authenticated and
  service_role inside a transaction that is rolled back (the owner would bypass RLS).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from syncpipe.db.database import Database
from syncpipe.db.ledger import applied_files, last_deploy, ledger_exists
from syncpipe.db.queries import qualified, scalar
from syncpipe.logs import get_logger
from syncpipe.services.catalog import CatalogObject, load_snapshot, read_catalog
from syncpipe.settings import Settings
from syncpipe.sqlfiles import SqlFile, discover

log = get_logger(__name__)

Status = Literal["pass", "fail", "warn", "skip"]
_ATTACHED = ("column", "constraint", "index", "trigger", "policy")
_ROLES = ("anon", "authenticated", "service_role")


@dataclass
class Check:
    """One verification result."""

    category: str
    check: str
    object: str
    status: Status
    message: str
    remediation: str = ""
    expected: str | None = None
    actual: str | None = None


@dataclass
class VerifyResult:
    """All checks of one verify run."""

    env: str
    target: str
    checked_at: str
    deploy: dict[str, Any] | None
    checks: list[Check] = field(default_factory=list)
    fail_on: Literal["error", "warn"] = "error"

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Record a check."""
        self.checks.append(Check(*args, **kwargs))

    def count(self, status: Status) -> int:
        """How many checks have ``status``."""
        return sum(1 for c in self.checks if c.status == status)

    @property
    def ok(self) -> bool:
        """No failure (and no warning when failing on warnings)."""
        if self.count("fail"):
            return False
        return not (self.fail_on == "warn" and self.count("warn"))

    @property
    def problems(self) -> list[Check]:
        """Failures, then warnings."""
        order = {"fail": 0, "warn": 1}
        return sorted((c for c in self.checks if c.status in order), key=lambda c: order[c.status])

    def summary(self) -> dict[str, int]:
        """Counts by status."""
        return {s: self.count(s) for s in ("pass", "fail", "warn", "skip")}

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``syncpipe verify --json``."""
        deploy = None
        if self.deploy:
            deploy = {
                k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.deploy.items()
            }
        return {
            "version": 1,
            "env": self.env,
            "target": self.target,
            "checked_at": self.checked_at,
            "ok": self.ok,
            "fail_on": self.fail_on,
            "summary": self.summary(),
            "deploy": deploy,
            "checks": [asdict(c) for c in self.checks],
        }


class VerifyService:
    """Runs every check against the live database; never writes."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def run(self, *, fail_on: Literal["error", "warn"] = "error") -> VerifyResult:
        """Run all checks and return the result (the caller decides the exit code)."""
        files = discover(self.settings.sql_dir)
        schemas = list(self.settings.exposed_schemas)
        with self.db.connection() as conn:
            result = VerifyResult(
                env=self.settings.env,
                target=self.db.target,
                checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
                deploy=last_deploy(conn),
                fail_on=fail_on,
            )
            if not ledger_exists(conn) or result.deploy is None:
                result.add(
                    "files",
                    "deployed",
                    "database",
                    "fail",
                    "syncpipe has never deployed to this database.",
                    "Run `syncpipe deploy`.",
                )
                return result
            self._check_files(conn, files, result)
            snapshot = load_snapshot(conn)
            live = read_catalog(conn, schemas)
            self._check_catalog(snapshot, live, result)
            self._check_security(conn, schemas, snapshot, result)
            self._check_rls_behaviour(conn, schemas, snapshot, live, result)
            conn.rollback()
        log.info("verify.done", **result.summary(), ok=result.ok)
        return result

    # -- files -----------------------------------------------------------------------------
    def _check_files(
        self, conn: psycopg.Connection[Any], files: list[SqlFile], result: VerifyResult
    ) -> None:
        ledger = applied_files(conn)
        for f in files:
            entry = ledger.get(f.rel)
            if entry is None:
                result.add(
                    "files",
                    "deployed",
                    f.display,
                    "fail",
                    "not deployed yet.",
                    "Run `syncpipe deploy`.",
                )
            elif entry[0] != f.sha256:
                result.add(
                    "files",
                    "deployed",
                    f.display,
                    "fail",
                    "changed since it was deployed.",
                    "Run `syncpipe deploy` (or restore the file).",
                    expected=entry[0],
                    actual=f.sha256,
                )
            else:
                result.add("files", "deployed", f.display, "pass", "deployed and unchanged")
        known = {f.rel for f in files}
        for rel in sorted(set(ledger) - known):
            result.add(
                "files",
                "deployed",
                f"sql/{rel}",
                "warn",
                "was deployed but is no longer in the SQL folder; its objects are still "
                "in the database.",
            )

    # -- catalog ---------------------------------------------------------------------------
    def _check_catalog(
        self,
        snapshot: dict[tuple[str, str], CatalogObject],
        live: dict[tuple[str, str], CatalogObject],
        result: VerifyResult,
    ) -> None:
        deploy_id = result.deploy["id"] if result.deploy else "?"
        missing_tables = {i for (t, i) in snapshot if t == "table" and (t, i) not in live}
        for key in _ordered(snapshot):
            want = snapshot[key]
            have = live.get(key)
            table = ".".join(want.identity.split(".")[:2])
            if have is None and want.object_type != "table" and table in missing_tables:
                continue  # reported once, with its table
            if have is None:
                parts = ""
                if want.object_type == "table":
                    parts = _parts_of(snapshot, want.identity)
                result.add(
                    "catalog",
                    "present",
                    want.label,
                    "fail",
                    f"missing{parts}; deploy #{deploy_id} created it.",
                    "Find out who dropped it, then restore it from sql/ "
                    "(a new DDL file) and deploy.",
                    expected=want.definition,
                )
            elif have.fingerprint != want.fingerprint:
                result.add(
                    "catalog",
                    "unchanged",
                    want.label,
                    "fail",
                    f"differs from what deploy #{deploy_id} installed (drift): "
                    f"{_first_difference(want.definition, have.definition)}.",
                    _drift_remedy(want.object_type),
                    expected=want.definition,
                    actual=have.definition,
                )
            else:
                result.add("catalog", "unchanged", want.label, "pass", "matches the deploy")
        our_tables = {i for (t, i) in snapshot if t == "table"}
        for key in _ordered(live):
            if key in snapshot:
                continue
            obj = live[key]
            table = ".".join(obj.identity.split(".")[:2])
            if obj.object_type in _ATTACHED and table in our_tables:
                result.add(
                    "catalog",
                    "unknown",
                    obj.label,
                    "fail",
                    f"not created by syncpipe deploy, yet it is on {table} (drift).",
                    "Add it to sql/ and deploy, or drop it.",
                    actual=obj.definition,
                )
            elif obj.object_type in ("table", "function") or (
                obj.object_type in _ATTACHED
                and table not in our_tables
                and obj.object_type in ("trigger", "policy")
            ):
                result.add(
                    "catalog", "unknown", obj.label, "warn", "not created by syncpipe deploy."
                )

    # -- security lints --------------------------------------------------------------------
    def _check_security(
        self,
        conn: psycopg.Connection[Any],
        schemas: list[str],
        snapshot: dict[tuple[str, str], CatalogObject],
        result: VerifyResult,
    ) -> None:
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(_ROLES),)
            ).fetchall()
        }
        for role in _ROLES:
            if role in existing:
                result.add("security", "role_exists", f"role {role}", "pass", "exists")
            else:
                result.add(
                    "security",
                    "role_exists",
                    f"role {role}",
                    "fail",
                    "missing (a Supabase role the policies use).",
                    "Run `syncpipe deploy`.",
                )

        rows = conn.execute(
            """
            SELECT format('%%I.%%I', n.nspname, c.relname), c.relrowsecurity,
                   EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)
              AND c.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')
            ORDER BY 1
            """,
            (schemas,),
        ).fetchall()
        for name, rls, has_policy in rows:
            label = f"table {name}"
            if not rls and has_policy:
                result.add(
                    "security",
                    "policy_exists_rls_disabled",
                    label,
                    "fail",
                    "has policies but row level security is disabled, so they do nothing.",
                    f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;",
                )
            elif not rls:
                result.add(
                    "security",
                    "rls_enabled",
                    label,
                    "fail",
                    "row level security is disabled on an exposed table "
                    f"({name.split('.')[0]} is in SYNCPIPE_EXPOSED_SCHEMAS).",
                    f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;",
                )
            else:
                result.add("security", "rls_enabled", label, "pass", "enabled")
                if not has_policy:
                    result.add(
                        "security",
                        "rls_enabled_no_policy",
                        label,
                        "warn",
                        "row level security is on but no policy exists: only the owner "
                        "and BYPASSRLS roles can use it.",
                    )

        ours = {i for (t, i) in snapshot if t == "function"}
        anon_exists = "anon" in existing
        fn_rows = conn.execute(
            """
            SELECT format('%%I.%%I(%%s)', n.nspname, p.proname,
                          pg_get_function_identity_arguments(p.oid)),
                   p.prosecdef,
                   EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c
                           WHERE c LIKE 'search_path=%%'),
                   CASE WHEN %s THEN has_function_privilege('anon', p.oid, 'EXECUTE') END,
                   l.lanname = 'sql' AND p.provolatile = 'i' AND NOT p.prosecdef
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 JOIN pg_language l ON l.oid = p.prolang
            WHERE n.nspname = ANY(%s) AND p.prokind IN ('f', 'p')
              AND p.oid NOT IN (SELECT objid FROM pg_depend WHERE deptype = 'e')
            ORDER BY 1
            """,
            (anon_exists, schemas),
        ).fetchall()
        for name, secdef, fixed_path, anon_exec, inlinable in fn_rows:
            label = f"function {name}"
            if fixed_path:
                result.add("security", "function_search_path", label, "pass", "fixed search_path")
            elif inlinable and name in ours:
                # A SET clause would stop the planner inlining these expression helpers; they
                # run with the caller's rights, so the caller's search_path is no escalation.
                result.add(
                    "security",
                    "function_search_path",
                    label,
                    "pass",
                    "inlinable SQL expression: uses its caller's search_path and rights",
                )
            else:
                result.add(
                    "security",
                    "function_search_path",
                    label,
                    "fail" if name in ours else "warn",
                    "has a mutable search_path.",
                    f"ALTER FUNCTION {name} SET search_path = pg_catalog, public;",
                )
            if secdef and anon_exec:
                result.add(
                    "security",
                    "security_definer_anon",
                    label,
                    "fail",
                    "is SECURITY DEFINER and anon may execute it.",
                    f"REVOKE EXECUTE ON FUNCTION {name} FROM PUBLIC, anon;",
                )

        pol_rows = conn.execute(
            """
            SELECT format('%%I.%%I.%%I', schemaname, tablename, policyname), roles::text[], cmd,
                   coalesce(qual, ''), coalesce(with_check, '')
            FROM pg_policies WHERE schemaname = ANY(%s) ORDER BY 1
            """,
            (schemas,),
        ).fetchall()
        for name, roles, cmd, qual, check in pol_rows:
            if cmd == "SELECT" or set(roles) <= {"service_role"}:
                continue
            if qual.strip() == "true" or check.strip() == "true":
                broad = bool({"anon", "public"} & set(roles))
                result.add(
                    "security",
                    "rls_policy_always_true",
                    f"policy {name}",
                    "fail" if broad else "warn",
                    f"lets {', '.join(roles)} {cmd} every row (its expression is always true).",
                    "Restrict the policy's USING / WITH CHECK expression.",
                )

    # -- RLS behaviour ---------------------------------------------------------------------
    def _check_rls_behaviour(
        self,
        conn: psycopg.Connection[Any],
        schemas: list[str],
        snapshot: dict[tuple[str, str], CatalogObject],
        live: dict[tuple[str, str], CatalogObject],
        result: VerifyResult,
    ) -> None:
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
            for r in _ROLES
            if not scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (r,))
        ]
        cannot = [
            r
            for r in _ROLES
            if r not in missing_roles
            and not scalar(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (r,))
        ]
        if missing_roles or cannot:
            why = (
                f"roles {', '.join(missing_roles)} are missing"
                if missing_roles
                else f"{self.db.info.user} cannot SET ROLE to {', '.join(cannot)}"
            )
            result.add(
                "rls",
                "behaviour",
                "row level security",
                "skip",
                f"RLS behaviour not tried: {why}.",
                "Run `syncpipe deploy` as a user who may create and grant the roles.",
            )
            return
        readable = {t.strip() for t in self.settings.authenticated_read_tables}
        with conn.transaction(force_rollback=True):
            conn.execute(
                "SELECT set_config('request.jwt.claims', %s, true)",
                ('{"sub": "00000000-0000-4000-8000-000000000000", "role": "authenticated"}',),
            )
            for table in tables:
                self._probe_table(conn, table, table in readable, result)

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


@dataclass
class _Probe:
    value: Any = None
    error: bool = False
    sqlstate: str | None = None


def _drift_remedy(object_type: str) -> str:
    if object_type in ("function", "trigger", "policy", "table"):
        return (
            "Keep the change by putting it in sql/ and deploying, or run `syncpipe deploy` "
            "to restore what sql/ says (functions, triggers and policies are re-applied)."
        )
    return "Keep the change by putting it in a new sql/ddl file, or undo it by hand."


def _parts_of(snapshot: dict[tuple[str, str], CatalogObject], table: str) -> str:
    counts: dict[str, int] = {}
    for kind, ident in snapshot:
        if kind != "table" and ".".join(ident.split(".")[:2]) == table:
            counts[kind] = counts.get(kind, 0) + 1
    if not counts:
        return ""
    listed = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items())
    return f" with its {listed}"


def _ordered(objects: dict[tuple[str, str], Any]) -> list[tuple[str, str]]:
    from syncpipe.services.catalog import OBJECT_TYPES

    rank = {t: i for i, t in enumerate(OBJECT_TYPES)}
    return sorted(objects, key=lambda k: (rank.get(k[0], 99), k[1]))


def _first_difference(expected: str, actual: str) -> str:
    diff = [
        line
        for line in difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), lineterm="", n=0
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    removed = next((ln[1:].strip() for ln in diff if ln.startswith("-")), None)
    added = next((ln[1:].strip() for ln in diff if ln.startswith("+")), None)
    if removed and added:
        return f"expected `{_clip(removed)}`, found `{_clip(added)}`"
    if removed:
        return f"missing `{_clip(removed)}`"
    if added:
        return f"unexpected `{_clip(added)}`"
    return "the definition changed"


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
