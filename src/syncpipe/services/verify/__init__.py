"""Verify: prove the live database is what ``sql/`` and the last deploy say it should be.

Four groups of checks, each in a module of its own, each adding typed ``Check`` rows to one
``VerifyResult`` (result.py):

* files (files.py): every SQL file is deployed and unchanged since (the deploy ledger);
* catalog (drift.py): every object deploy created still exists and matches its catalog
  fingerprint; unknown objects on syncpipe's tables;
* security (lints.py): Supabase's Security Advisor lints, under its names and levels, and
  syncpipe's own rules (the API roles' allow-list, the internal schemas);
* rls (rls.py): row level security behaviour, tried as anon, authenticated and service_role
  inside a transaction that is rolled back.

Verify never writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from syncpipe.db.database import Database
from syncpipe.db.ledger import last_deploy, ledger_exists
from syncpipe.logs import get_logger
from syncpipe.services.catalog import INTERNAL_SCHEMAS, load_snapshot, read_catalog
from syncpipe.services.verify.drift import check_catalog
from syncpipe.services.verify.files import check_files
from syncpipe.services.verify.lints import LINTS, Lint, run_lints
from syncpipe.services.verify.result import Check, VerifyResult
from syncpipe.services.verify.rls import ROLES, RlsBehaviour
from syncpipe.settings import Settings
from syncpipe.sqlfiles import discover

__all__ = ["LINTS", "Check", "Lint", "VerifyResult", "VerifyService"]

log = get_logger(__name__)

#: What anon and authenticated may always execute: Supabase's auth helpers.
AUTH_HELPERS = ("auth.uid", "auth.jwt", "auth.role", "auth.email")


class VerifyService:
    """Runs every check against the live database; never writes."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def run(self, *, fail_on: Literal["error", "warn"] = "error") -> VerifyResult:
        """Run all checks and return the result (the caller decides the exit code)."""
        files = discover(self.settings.sql_dir)
        schemas = list(dict.fromkeys(self.settings.exposed_schemas))  # (each checked once)
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
            check_files(conn, files, result)
            snapshot = load_snapshot(conn)
            # (the live catalog of every schema deploy recorded objects in too: a narrower
            # SYNCPIPE_EXPOSED_SCHEMAS than deploy's made its other tables look dropped)
            deployed = {identity.split(".")[0] for _, identity in snapshot}
            live = read_catalog(conn, sorted(set(schemas) | deployed))
            check_catalog(snapshot, live, result)
            self._schemas_exist(conn, schemas, result)
            if self._roles_exist(conn, result):
                run_lints(
                    conn,
                    result,
                    {
                        "schemas": schemas,
                        "internal": [*INTERNAL_SCHEMAS, "syncpipe_work", "syncpipe"],
                        "readable": [t.strip() for t in self.settings.authenticated_read_tables],
                        "allowed": [*AUTH_HELPERS, *self.settings.api_allowed_functions],
                    },
                )
            RlsBehaviour(self.db.info.user, self.settings.authenticated_read_tables).run(
                conn, schemas, snapshot, live, result
            )
            conn.rollback()
        log.info("verify.done", **result.summary(), ok=result.ok)
        return result

    @staticmethod
    def _schemas_exist(
        conn: psycopg.Connection[Any], schemas: list[str], result: VerifyResult
    ) -> None:
        """The schemas the API exposes (SYNCPIPE_EXPOSED_SCHEMAS): one the database lacks is
        a typo, and a typo checked nothing (verify passed with the schemas it meant unread)."""
        _each_exists(
            conn,
            result,
            ("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", schemas),
            ("exposed_schema", "schema"),
            (
                "does not exist: SYNCPIPE_EXPOSED_SCHEMAS names it, and nothing in it could "
                "be checked.",
                "Name the schemas the API exposes in SYNCPIPE_EXPOSED_SCHEMAS.",
            ),
        )

    @staticmethod
    def _roles_exist(conn: psycopg.Connection[Any], result: VerifyResult) -> bool:
        """The API roles the policies name; the security lints need them to exist."""
        existing = _each_exists(
            conn,
            result,
            ("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", list(ROLES)),
            ("role_exists", "role"),
            (
                "missing (a Supabase role the policies use); the security lints were not run.",
                "Run `syncpipe deploy`.",
            ),
        )
        return existing == set(ROLES)


def _each_exists(
    conn: psycopg.Connection[Any],
    result: VerifyResult,
    lookup: tuple[str, list[str]],
    check: tuple[str, str],
    missing: tuple[str, str],
) -> set[str]:
    """A security check per name: pass where ``lookup`` (a query of the names among a list,
    and the list) finds it, fail with ``missing`` (message, remediation) where not."""
    query, names = lookup
    existing = {str(r[0]) for r in conn.execute(query, (names,)).fetchall()}
    for name in names:
        if name in existing:
            result.add("security", check[0], f"{check[1]} {name}", "pass", "exists")
        else:
            result.add("security", check[0], f"{check[1]} {name}", "fail", *missing)
    return existing
