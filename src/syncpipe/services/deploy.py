"""Deploy: apply ``sql/`` in order, in one transaction, under an advisory lock, with a ledger.

* DDL files run once (append-only: an applied DDL file that changed is refused);
* function, trigger and RLS files are re-applied whenever their checksum changes;
* a failing statement rolls the whole deploy back and is reported as ``file:line``;
* after the files, the catalog fingerprint of every object is recorded for ``verify``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from syncpipe import __version__
from syncpipe.core.errors import JobFailedError, SqlFileError
from syncpipe.core.redact import redact
from syncpipe.db.database import Database
from syncpipe.db.errors import lost_error, statement_error
from syncpipe.db.ledger import applied_files, ensure_ledger, ledger_exists
from syncpipe.db.locks import LockKind, xact_lock
from syncpipe.logs import get_logger
from syncpipe.services.catalog import load_snapshot, read_catalog, save_snapshot
from syncpipe.services.compat import CompatAction, apply_compat, plan_compat
from syncpipe.services.ownership import DriftPlan, owned_after, plan_drift
from syncpipe.settings import Settings
from syncpipe.sqlfiles import SqlFile, Statement, discover

log = get_logger(__name__)

REPEATABLE_KINDS = frozenset({"functions", "triggers", "rls"})

#: Called as (files done, files to apply, current file) while applying.
ProgressFn = Callable[[int, int, str], None]


class DriftError(JobFailedError):
    """The database drifted from what deploy owns in a way deploy will not repair."""

    def __init__(self, target: str, drift: list[str]) -> None:
        shown = "; ".join(drift[:5]) + (f"; and {len(drift) - 5} more" if len(drift) > 5 else "")
        super().__init__(
            f"{target} has drifted from what syncpipe deployed, and deploy will not repair it: "
            f"{shown}. Nothing was applied: restore these by hand, or put the change in a new "
            "sql/ddl file and deploy."
        )


@dataclass
class FileOutcome:
    """What deploy decided for, and did with, one file."""

    file: str
    kind: str
    sha256: str
    status: str  # new | changed | drifted | unchanged | refused | applied
    reason: str
    duration_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape used in reports."""
        return {
            "file": f"sql/{self.file}",
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "sha256": self.sha256,
            "duration_ms": self.duration_ms,
        }


@dataclass
class DeployResult:
    """The outcome of ``syncpipe deploy`` (or of ``--plan``)."""

    env: str
    target: str
    plan_only: bool
    files: list[FileOutcome] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    compat: list[str] = field(default_factory=list)
    #: Objects deploy rebuilt from their recorded definitions (drift it repaired).
    repaired: list[str] = field(default_factory=list)
    #: Drift deploy will not repair (a missing column, a changed table): it applies nothing.
    drift_refused: list[str] = field(default_factory=list)
    deploy_id: int | None = None
    duration_s: float = 0.0

    @property
    def to_apply(self) -> list[FileOutcome]:
        """Files that are (or would be) applied."""
        return [f for f in self.files if f.status in ("new", "changed", "drifted", "applied")]

    @property
    def unchanged(self) -> list[FileOutcome]:
        """Files left alone."""
        return [f for f in self.files if f.status == "unchanged"]

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of ``syncpipe deploy --json`` and of the report step."""
        return {
            "env": self.env,
            "target": self.target,
            "plan_only": self.plan_only,
            "deploy_id": self.deploy_id,
            "applied": 0 if self.plan_only else len(self.to_apply),
            "would_apply": len(self.to_apply) if self.plan_only else 0,
            "unchanged": len(self.unchanged),
            "compat": self.compat,
            "files": [f.to_dict() for f in self.files],
            "removed_files": self.removed,
            "repaired": self.repaired,
            "drift_refused": self.drift_refused,
            "duration_s": round(self.duration_s, 3),
        }


def plan_files(
    files: list[SqlFile], ledger: dict[str, tuple[str, str]], drift: list[str] | None = None
) -> list[FileOutcome]:
    """Decide new / changed / drifted / unchanged / refused for each file against the ledger.

    ``drift`` names objects that changed in the database since the last deploy; when there are
    any, the repeatable files (functions, triggers, RLS) are applied again to restore them.
    """
    outcomes = []
    drift_note = ""
    if drift:
        shown = ", ".join(drift[:3]) + (f" and {len(drift) - 3} more" if len(drift) > 3 else "")
        drift_note = f"restores objects changed in the database since the last deploy: {shown}"
    for f in files:
        entry = ledger.get(f.rel)
        if entry is None:
            outcomes.append(FileOutcome(f.rel, f.kind, f.sha256, "new", "not applied yet"))
        elif entry[0] == f.sha256 and drift and f.kind in REPEATABLE_KINDS:
            outcomes.append(FileOutcome(f.rel, f.kind, f.sha256, "drifted", drift_note))
        elif entry[0] == f.sha256:
            outcomes.append(FileOutcome(f.rel, f.kind, f.sha256, "unchanged", "already applied"))
        elif f.kind in REPEATABLE_KINDS:
            outcomes.append(
                FileOutcome(f.rel, f.kind, f.sha256, "changed", "changed since last deploy")
            )
        else:
            outcomes.append(
                FileOutcome(
                    f.rel,
                    f.kind,
                    f.sha256,
                    "refused",
                    "DDL file changed after it was applied; DDL is append-only: restore it and "
                    "put the change in a new file",
                )
            )
    return outcomes


class DeployService:
    """Applies the SQL folder to the database."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def run(self, *, plan_only: bool = False, progress: ProgressFn | None = None) -> DeployResult:
        """Deploy (or, with ``plan_only``, say what a deploy would do and write nothing)."""
        t0 = time.perf_counter()
        started = datetime.now(UTC)
        files = discover(self.settings.sql_dir)
        by_rel = {f.rel: f for f in files}
        result = DeployResult(env=self.settings.env, target=self.db.target, plan_only=plan_only)
        with self.db.connection() as conn:
            try:
                # One transaction, and the deploy lock with it (nothing held by the session:
                # any pooler, any mode).
                with conn.transaction(force_rollback=plan_only):
                    xact_lock(
                        conn,
                        LockKind.DEPLOY,
                        timeout=self.settings.lock_timeout,
                        what="syncpipe deploy",
                    )
                    conn.execute("SET LOCAL search_path = public, extensions")
                    ensure_ledger(conn)
                    ledger = applied_files(conn)
                    snapshot = load_snapshot(conn)
                    before = read_catalog(conn, list(self.settings.exposed_schemas))
                    drift = plan_drift(snapshot, before)
                    result.files = plan_files(files, ledger, drift.reapply)
                    result.removed = sorted(f"sql/{rel}" for rel in set(ledger) - set(by_rel))
                    result.repaired = [r.label for r in drift.repairs]
                    result.drift_refused = drift.refused
                    refused = [o for o in result.files if o.status == "refused"]
                    if refused and not plan_only:
                        first = refused[0]
                        raise SqlFileError(f"sql/{first.file}", None, first.reason)
                    if drift.refused and not plan_only:
                        raise DriftError(self.db.target, drift.refused)
                    compat = plan_compat(conn)
                    result.compat = [a.description for a in compat]
                    pending = [by_rel[o.file] for o in result.to_apply]
                    self._check_extensions(conn, pending)
                    if plan_only:
                        return self._finish(result, t0)
                    self._repair(conn, drift)
                    self._apply(conn, compat, pending, result, progress)
                    result.deploy_id = self._record(conn, started, result)
                    after = read_catalog(conn, list(self.settings.exposed_schemas))
                    save_snapshot(conn, owned_after(snapshot, before, after), result.deploy_id)
            except (SqlFileError, DriftError, psycopg.Error) as exc:
                if isinstance(exc, psycopg.OperationalError) and conn.broken:
                    raise lost_error(
                        self.db.target,
                        "during deploy",
                        "nothing was applied (the transaction was rolled back)",
                    ) from None
                self._record_failure(conn, started, exc)
                raise
        log.info(
            "deploy.done",
            applied=len(result.to_apply),
            unchanged=len(result.unchanged),
            deploy_id=result.deploy_id,
            compat=len(result.compat),
        )
        return self._finish(result, t0)

    # -- steps -----------------------------------------------------------------------------
    def _apply(
        self,
        conn: psycopg.Connection[Any],
        compat: list[CompatAction],
        pending: list[SqlFile],
        result: DeployResult,
        progress: ProgressFn | None,
    ) -> None:
        if compat:
            apply_compat(conn, compat)
            log.info("deploy.compat", actions=[a.description for a in compat])
        outcomes = {o.file: o for o in result.files}
        for index, sql_file in enumerate(pending):
            if progress:
                progress(index, len(pending), sql_file.display)
            t0 = time.perf_counter()
            for stmt in sql_file.statements:
                self._execute(conn, sql_file, stmt)
            outcome = outcomes[sql_file.rel]
            outcome.duration_ms = round((time.perf_counter() - t0) * 1000, 1)
            outcome.reason = f"{outcome.status}: applied"
            outcome.status = "applied"
            log.debug("deploy.file_applied", file=sql_file.display, ms=outcome.duration_ms)
        if progress:
            progress(len(pending), len(pending), "")

    def _execute(self, conn: psycopg.Connection[Any], sql_file: SqlFile, stmt: Statement) -> None:
        try:
            conn.execute(stmt.text.encode())
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and conn.broken:
                raise
            position = exc.diag.statement_position
            raise SqlFileError(
                sql_file.display,
                stmt.line_of(int(position) if position else None),
                statement_error(exc) + "; nothing was deployed (the transaction was rolled back)",
            ) from exc

    def _repair(self, conn: psycopg.Connection[Any], drift: DriftPlan) -> None:
        """Rebuild the missing or changed indexes and constraints deploy owns."""
        for repair in drift.repairs:
            for statement in repair.statements:
                try:
                    with conn.transaction():
                        conn.execute(statement.encode())
                except psycopg.Error as exc:
                    if isinstance(exc, psycopg.OperationalError) and conn.broken:
                        raise
                    raise DriftError(
                        self.db.target,
                        [f"{repair.label}: could not be rebuilt ({statement_error(exc)})"],
                    ) from None
            log.info("deploy.repaired", object=repair.label)

    def _check_extensions(self, conn: psycopg.Connection[Any], pending: list[SqlFile]) -> None:
        wanted = [(f, s, s.extension) for f in pending for s in f.statements if s.extension]
        if not wanted:
            return
        names = sorted({name for _, _, name in wanted if name})
        available = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (names,)
            ).fetchall()
        }
        for sql_file, stmt, name in wanted:
            if name not in available:
                major = self.db.server_version // 10000
                raise SqlFileError(
                    sql_file.display,
                    stmt.line,
                    f"extension {name} is not available on this PostgreSQL server; install it "
                    f"(Debian/Ubuntu: postgresql-contrib or postgresql-{major}-{name}) or ask "
                    "your provider to enable it; nothing was deployed",
                )

    def _record(
        self, conn: psycopg.Connection[Any], started: datetime, result: DeployResult
    ) -> int:
        row = conn.execute(
            """
            INSERT INTO syncpipe.deploy_runs (env, started_at, status, client_host, tool_version,
                                              files_applied)
            VALUES (%s, %s, 'success', %s, %s, %s) RETURNING id
            """,
            (self.settings.env, started, socket.gethostname(), __version__, len(result.to_apply)),
        ).fetchone()
        assert row is not None
        deploy_id = int(row[0])
        for outcome in result.to_apply:
            conn.execute(
                """
                INSERT INTO syncpipe.applied_files (file, kind, sha256, duration_ms, deploy_id)
                VALUES (%(file)s, %(kind)s, %(sha)s, %(ms)s, %(id)s)
                ON CONFLICT (file) DO UPDATE SET
                    sha256 = EXCLUDED.sha256, applied_at = now(),
                    duration_ms = EXCLUDED.duration_ms,
                    applied_by = session_user, apply_count = syncpipe.applied_files.apply_count + 1,
                    deploy_id = EXCLUDED.deploy_id
                """,
                {
                    "file": outcome.file,
                    "kind": outcome.kind,
                    "sha": outcome.sha256,
                    "ms": round(outcome.duration_ms or 0),
                    "id": deploy_id,
                },
            )
        return deploy_id

    def _record_failure(
        self, conn: psycopg.Connection[Any], started: datetime, exc: Exception
    ) -> None:
        """Write a failed run to the ledger, after the rollback, when the ledger exists."""
        if conn.broken or conn.closed:
            return
        try:
            with conn.transaction():
                if not ledger_exists(conn):
                    return
                conn.execute(
                    """
                    INSERT INTO syncpipe.deploy_runs (env, started_at, status, client_host,
                                                      tool_version, error)
                    VALUES (%s, %s, 'failed', %s, %s, %s)
                    """,
                    (
                        self.settings.env,
                        started,
                        socket.gethostname(),
                        __version__,
                        redact(str(exc))[:2000],
                    ),
                )
            conn.commit()  # (the failed deploy was a savepoint, rolled back; this row stays)
        except psycopg.Error:
            log.warning("deploy.failure_not_recorded", exc_info=True)

    def _finish(self, result: DeployResult, t0: float) -> DeployResult:
        result.duration_s = time.perf_counter() - t0
        return result
