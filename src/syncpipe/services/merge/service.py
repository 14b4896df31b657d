"""``syncpipe merge``: the member pipeline and the merge batch, atomically, on one connection.

The work itself is done by the database functions (``run_unified_member_pipeline``,
``run_unified_merge_batch``, see ``sql/functions``); this service gives them what a person at
a terminal needs:

* one dedicated session (the session advisory lock must stay on the connection doing the
  work, and the work tables live in its transaction);
* log rows created beforehand in their own transaction, so a failure, even a lost connection,
  leaves a row that says so; the work itself is one transaction, rolled back whole on failure;
* phases reported as they start (the functions raise ``syncpipe.phase`` notices);
* a dry run that executes everything and rolls it back, with a sample of the pairs and an
  optional export of all of them;
* the custom pipeline steps named in a setting, after the merge, in the same transaction.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from syncpipe.core.errors import (
    ConfigError,
    ConnectError,
    JobFailedError,
    LockTimeoutError,
    NotDeployedError,
    ResourceError,
)
from syncpipe.db.database import Database
from syncpipe.db.errors import first_line, lost_error, resource_error, resource_error_of
from syncpipe.db.locks import (
    MERGE_OR_DECISION,
    LockKind,
    describe_row_holders,
    lock_timeout_setting,
    xact_lock,
)
from syncpipe.logs import get_logger
from syncpipe.services.merge.pairs import (
    DEFAULT_SEED,
    existing_agents,
    export_pairs,
    kept_apart,
    sample_pairs,
)
from syncpipe.settings import Settings

log = get_logger(__name__)

#: Called with the name of each phase as it starts.
PhaseFn = Callable[[str], None]

_REQUIRED_FUNCTIONS = (
    "public.run_unified_member_pipeline(jsonb)",
    "public.run_unified_merge_batch(jsonb)",
    "syncpipe_internal.merge_work_clear()",
)


@dataclass
class MergeResult:
    """What a merge did (or, dry, would do)."""

    dry_run: bool
    pipeline: dict[str, Any] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    pairs_sample: list[dict[str, Any]] = field(default_factory=list)
    #: a dry run: what the plan does to agents already in the master table (joined, retired)
    existing_agents: dict[str, Any] = field(default_factory=dict)
    pairs_exported: int | None = None
    pairs_output: str | None = None
    #: whether the team pages were vacuumed after the commit (a run that synced most of them)
    pages_vacuumed: bool = False
    seconds: float = 0.0

    @property
    def merge(self) -> dict[str, Any]:
        """The merge counts, summed over batches."""
        return sum_counts(self.batches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "pipeline": self.pipeline,
            "merge": self.merge,
            "batches": len(self.batches),
            "custom_steps": self.steps,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "pairs_sample": self.pairs_sample,
            "existing_agents": self.existing_agents,
            "pairs_exported": self.pairs_exported,
            "pairs_output": self.pairs_output,
            "pages_vacuumed": self.pages_vacuumed,
        }


_SUMMED = (
    "pending",
    "pending_new_agents",
    "pending_members",
    "changed_records",
    "records_matched",
    "automatic_links",
    "review_pairs",
    "agents_created",
    "agents_joined",
    "agents_retired",
    "agents_refreshed",
    "review_items_added",
    "shared_contacts",
)


#: The team pages' table: the member pipeline marks every page it read synced, which leaves
#: the old version of each (its members' document inline) behind.
_PAGES = ("bronze", "company_info_raw")


#: The server functions whose warning says VACUUM skipped a table: the role may not vacuum it
#: (up to PostgreSQL 15, then renamed), or its lock was not had. Their names are the same in
#: every language the server speaks; the English words ('skipping "t" --- only table or
#: database owner can vacuum it' up to 15, 'permission denied to vacuum "t", skipping it'
#: from 16 on, 'skipping vacuum of "t" --- lock not available') are checked too.
_VACUUM_SKIPS = frozenset(
    {"vacuum_is_relation_owner", "vacuum_is_permitted_for_relation", "vacuum_open_relation"}
)


def _vacuum_pages(conn: psycopg.Connection[Any], pages: int, phases: _Phases) -> bool:
    """After the commit of a run that marked more pages synced than autovacuum waits for (50
    plus a fifth of the table), VACUUM the team pages, so the next run does not read the dead
    versions back through the index of unsynced pages (without autovacuum, every later run
    read a first run's 100k of them again). Skipped, with a log line, where another VACUUM
    holds the table, this role may not vacuum it, anything fails or the user interrupts it
    (Ctrl-C): the merge is committed by then."""
    if pages <= 50:
        return False
    table = sql.Identifier(*_PAGES)
    notices: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if diag.source_function in _VACUUM_SKIPS or "skipping" in text:
            notices.append(text)

    try:
        row = conn.execute(
            sql.SQL("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = {}::regclass").format(
                sql.Literal(".".join(_PAGES))
            )
        ).fetchone()
        conn.commit()
        if pages <= 50 + 0.2 * float(row[0] if row else 0):
            return False
        phases.start("vacuum_pages")
        conn.autocommit = True
        conn.add_notice_handler(keep)
        try:
            conn.execute(sql.SQL("VACUUM (SKIP_LOCKED) {}").format(table))
        finally:
            conn.remove_notice_handler(keep)
            conn.autocommit = False
    except psycopg.Error as exc:
        log.warning("merge.vacuum_skipped", table=".".join(_PAGES), reason=first_line(exc))
        return False
    except KeyboardInterrupt:  # (psycopg cancels the statement; the merge stays committed)
        log.warning("merge.vacuum_skipped", table=".".join(_PAGES), reason="interrupted")
        return False
    if notices:
        log.warning("merge.vacuum_skipped", table=".".join(_PAGES), reason=notices[0])
    return not notices


def sum_counts(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the counts of several merge batches (nested rule counts too)."""
    if len(batches) == 1:
        return dict(batches[0])
    total: dict[str, Any] = {}
    for batch in batches:
        for key, value in batch.items():
            if key in _SUMMED and isinstance(value, int):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict) and key in ("links", "links_applied"):
                bucket = total.setdefault(key, {})
                for rule, n in value.items():
                    bucket[rule] = bucket.get(rule, 0) + int(n)
            elif key == "seconds":
                total[key] = round(total.get(key, 0.0) + float(value), 3)
            else:
                total.setdefault(key, value)
    return total


class _Phases:
    """Turns the functions' ``syncpipe.phase`` notices into progress and durations."""

    def __init__(self, progress: PhaseFn | None) -> None:
        self.progress = progress
        self.durations: dict[str, float] = {}
        #: the phase that started last (what a failure names)
        self.last: str | None = None
        self._current: str | None = None
        self._since = 0.0

    def start(self, name: str) -> None:
        self.stop()
        self._current, self._since = name, time.perf_counter()
        self.last = name
        if self.progress is not None:
            self.progress(name)

    def stop(self) -> None:
        if self._current is not None:
            spent = time.perf_counter() - self._since
            self.durations[self._current] = self.durations.get(self._current, 0.0) + spent
            self._current = None

    def notice(self, diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if text.startswith("syncpipe.phase "):
            self.start(text.split()[1])
        elif text:
            log.info("db.notice", message=text)


class MergeService:
    """Runs the member pipeline and the merge batch for ``syncpipe merge`` and full runs."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._seed = DEFAULT_SEED
        self._rescan = False

    def options(self, *, dry_run: bool) -> dict[str, Any]:
        """The functions' p_options from the settings."""
        s = self.settings
        return {
            "dry_run": dry_run,
            "auto_threshold": s.merge_auto_threshold,
            "confidence_email": s.merge_confidence_email,
            "confidence_phone": s.merge_confidence_phone,
            "confidence_name_team": s.merge_confidence_name_team,
            "confidence_fuzzy_name": s.merge_confidence_fuzzy_name,
            "fuzzy_similarity": s.merge_fuzzy_similarity,
            "work_mem": s.merge_work_mem.replace(" ", ""),
            # every source row, not only those changed since the last complete run
            "rescan": self._rescan,
        }

    # -- entry point ----------------------------------------------------------------------
    def run(
        self,
        *,
        dry_run: bool = False,
        pairs_output: Path | None = None,
        sample: int = 5,
        progress: PhaseFn | None = None,
        seed: int = DEFAULT_SEED,
        rescan: bool = False,
    ) -> MergeResult:
        self._seed = seed
        self._rescan = rescan
        started = time.perf_counter()
        result = MergeResult(dry_run=dry_run)
        phases = _Phases(progress)
        # A connection of the shared pool, not one more: behind a session-mode pooler each
        # client connection holds a server connection, and the pool's idle ones would make
        # this one wait for a slot they keep.
        with self.db.connection() as conn:
            conn.commit()  # (the merge manages its own transactions)
            conn.add_notice_handler(phases.notice)
            try:
                self._check_ready(conn)
                if dry_run:
                    self._dry_run(conn, result, phases, pairs_output, sample)
                else:
                    self._real_run(conn, result, phases, pairs_output, sample)
            except psycopg.OperationalError as exc:
                if conn.closed or conn.broken:
                    raise lost_error(
                        self.db.target,
                        "during the merge",
                        "nothing was written (the run is atomic); run `syncpipe merge` again",
                    ) from None
                resource = _resource_of(exc, phases.last, committed=0)
                if resource is not None:
                    raise resource from None
                if isinstance(exc, psycopg.errors.QueryCanceled):
                    raise JobFailedError(
                        _canceled(exc, phases.last, self.settings, committed=0)
                    ) from None
                raise JobFailedError(f"The merge failed: {first_line(exc)}") from None
            finally:
                phases.stop()
                conn.remove_notice_handler(phases.notice)
        result.phases = phases.durations
        result.seconds = time.perf_counter() - started
        log.info("merge.done", **_log_fields(result))
        return result

    # -- checks ---------------------------------------------------------------------------
    def _check_ready(self, conn: psycopg.Connection[Any]) -> None:
        for signature in _REQUIRED_FUNCTIONS:
            row = conn.execute("SELECT to_regprocedure(%s)", (signature,)).fetchone()
            if row is None or row[0] is None:
                raise NotDeployedError(
                    f"{self.db.target} lacks {signature.split('(')[0]}(); "
                    "run `syncpipe deploy` first."
                )
        # (sources emptied after a merge leave lineage and agents to refresh: not nothing)
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM public.new_agents)"
            " OR EXISTS (SELECT 1 FROM bronze.company_info_raw)"
            " OR EXISTS (SELECT 1 FROM public.unified_agent_sources)"
            " OR EXISTS (SELECT 1 FROM public.merge_dirty_agents)"
        ).fetchone()
        conn.commit()
        if not (row and row[0]):
            raise JobFailedError(
                "Nothing to merge: public.new_agents and bronze.company_info_raw are empty; "
                "load CSV files first (`syncpipe load data/`)."
            )
        self._custom_steps(conn)  # fail on a bad setting before any work
        conn.commit()

    def _custom_steps(self, conn: psycopg.Connection[Any]) -> list[tuple[str, bool]]:
        """(function, takes_jsonb) per SYNCPIPE_PIPELINE_STEPS entry; ConfigError if missing."""
        steps: list[tuple[str, bool]] = []
        for name in self.settings.pipeline_steps:
            row = conn.execute(
                "SELECT to_regprocedure(%s)::text, to_regprocedure(%s)::text",
                (f"{name}(jsonb)", f"{name}()"),
            ).fetchone()
            with_arg, without = row if row else (None, None)
            if with_arg is None and without is None:
                raise ConfigError(
                    f"Setting SYNCPIPE_PIPELINE_STEPS names {name}, but no function {name}() "
                    f"or {name}(jsonb) exists in the database."
                )
            steps.append((name, with_arg is not None))
        return steps

    # -- runs -----------------------------------------------------------------------------
    def _dry_run(
        self,
        conn: psycopg.Connection[Any],
        result: MergeResult,
        phases: _Phases,
        pairs_output: Path | None,
        sample: int,
    ) -> None:
        # (the work tables stay for the merge and the pairs; the rollback drops them)
        options = {**self.options(dry_run=True), "keep_work": True}
        try:
            self._begin_work(conn)
            result.pipeline = _call(conn, "run_unified_member_pipeline", options)
            batch = _merge_batch(conn, options, self.settings.lock_timeout)
            result.batches.append(batch)
            self._collect_pairs(conn, result, phases, pairs_output, sample)
            if batch.get("status") != "failed":
                if not result.existing_agents:  # (no sample asked for: the counts still are)
                    result.existing_agents = existing_agents(conn, 0, self._seed)
                # The counts a run reports, under the same names, as the plan predicts them (a
                # script reading agents_created got null from a dry run).
                batch.update(
                    review_pairs_kept_apart=kept_apart(conn),
                    records_matched=batch.get("pending"),
                    agents_created=batch.get("agents_new"),
                    agents_joined=result.existing_agents.get("joined", 0),
                    agents_retired=result.existing_agents.get("retired", 0),
                )
        finally:
            conn.rollback()  # a dry run writes nothing at all

    def _real_run(
        self,
        conn: psycopg.Connection[Any],
        result: MergeResult,
        phases: _Phases,
        pairs_output: Path | None,
        sample: int,
    ) -> None:
        logs = self._open_logs(conn)
        log_ids = list(logs.values())
        batch_limit = self.settings.merge_batch_records
        committed = 0  # batches committed (when SYNCPIPE_MERGE_BATCH_RECORDS splits the run)
        try:
            self._begin_work(conn, settle=log_ids)
            options = self.options(dry_run=False)
            result.pipeline = _call(
                conn,
                "run_unified_member_pipeline",
                {**options, "log_id": logs["member_pipeline"], "merge_follows": True},
            )
            _raise_if_failed(
                "member pipeline", result.pipeline, phases.last, committed, self.settings
            )
            # The batch leaves its work tables for the pairs; they are dropped before commit.
            batch_options = {**options, "log_id": logs["merge"], "keep_work": True}
            if batch_limit:
                batch_options["limit"] = batch_limit
            while True:
                counts = _merge_batch(conn, batch_options, self.settings.lock_timeout)
                _raise_if_failed("merge", counts, phases.last, committed, self.settings)
                result.batches.append(counts)
                if not batch_limit or int(counts.get("pending", 0)) < batch_limit:
                    break
                # Commit this batch, log the next one in a row of its own.
                _clear_work(conn)
                conn.commit()
                committed += 1
                batch_options["log_id"] = self._new_log(conn, "merge")
                log_ids.append(batch_options["log_id"])
                conn.commit()  # (the batch's row stays, whatever happens to the batch)
                self._begin_work(conn)
            for name, takes_counts in self._custom_steps(conn):
                result.steps.append(self._run_step(conn, phases, name, takes_counts, result))
            self._collect_pairs(conn, result, phases, pairs_output, sample)
            phases.start("commit")
            _clear_work(conn)
            conn.commit()
        except BaseException as exc:
            lost = conn.closed or conn.broken
            if not lost:
                conn.rollback()
            resource = None if lost else _resource_of(exc, phases.last, committed)
            self._fail_logs(log_ids, resource or exc, pipeline_done=bool(result.pipeline))
            if resource is not None:
                raise resource from None
            if isinstance(exc, psycopg.errors.QueryCanceled) and not lost:
                raise JobFailedError(
                    _canceled(exc, phases.last, self.settings, committed)
                ) from None
            raise
        result.pages_vacuumed = _vacuum_pages(conn, int(result.pipeline.get("pages", 0)), phases)

    def _collect_pairs(
        self,
        conn: psycopg.Connection[Any],
        result: MergeResult,
        phases: _Phases,
        pairs_output: Path | None,
        sample: int,
    ) -> None:
        auto = self.settings.merge_auto_threshold
        if sample > 0 or pairs_output is not None:
            # The work tables have no statistics, so their estimated cost is high enough for
            # the JIT to compile these one-off queries: about a second, saving nothing.
            conn.execute("SET LOCAL jit = off")
        if sample > 0:
            phases.start("sample_pairs")
            result.pairs_sample = sample_pairs(conn, auto, sample, self._seed)
            if result.dry_run:
                phases.start("existing_agents")
                result.existing_agents = existing_agents(conn, sample, self._seed)
        if pairs_output is not None:
            phases.start("export_pairs")
            result.pairs_exported = export_pairs(conn, auto, pairs_output)
            result.pairs_output = str(pairs_output)

    def _run_step(
        self,
        conn: psycopg.Connection[Any],
        phases: _Phases,
        name: str,
        takes_counts: bool,
        result: MergeResult,
    ) -> dict[str, Any]:
        phases.start(f"step:{name}")
        started = time.perf_counter()
        function = sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))
        try:
            if takes_counts:
                row = conn.execute(
                    sql.SQL("SELECT {}(%s)::text").format(function), (Jsonb(result.merge),)
                ).fetchone()
            else:
                row = conn.execute(sql.SQL("SELECT {}()::text").format(function)).fetchone()
        except psycopg.Error as exc:
            lost = isinstance(exc, psycopg.OperationalError) and (conn.closed or conn.broken)
            if lost or _resource_of(exc, None, committed=0) is not None:
                raise  # (the run says these in its words, with what its batches kept)
            raise JobFailedError(
                f"Pipeline step {name} (setting SYNCPIPE_PIPELINE_STEPS) failed: {first_line(exc)}"
            ) from None
        step = {
            "function": name,
            "seconds": round(time.perf_counter() - started, 3),
            "result": row[0] if row else None,
        }
        log.info("merge.step", **step)
        return step

    def _begin_work(
        self, conn: psycopg.Connection[Any], *, settle: list[int] | None = None
    ) -> None:
        """Start a work transaction: its settings, then the merge lock (transaction-scoped, so
        any pooler in any mode keeps it with the work), waited for up to the lock timeout."""
        self.db.begin(conn)
        # A merge whose client went away stops on the server within seconds.
        conn.execute("SELECT set_config('client_connection_check_interval', '2s', true)")
        xact_lock(conn, LockKind.MERGE, timeout=self.settings.lock_timeout, what=MERGE_OR_DECISION)
        if settle:
            # Holding the lock, an older row still 'running' is a run whose client was lost.
            conn.execute(
                """
                UPDATE public.unified_merge_logs
                SET status = 'failed', finished_at = clock_timestamp(),
                    error_message = 'interrupted: the client was lost before the run finished'
                WHERE status = 'running' AND id <> ALL(%s) AND id < %s
                """,
                (settle, min(settle)),
            )

    # -- log rows -------------------------------------------------------------------------
    def _open_logs(self, conn: psycopg.Connection[Any]) -> dict[str, int]:
        """Open this run's log rows in a transaction of their own (committed), so that a run
        that fails, even by losing its connection, leaves rows that say so."""
        logs = {kind: self._new_log(conn, kind) for kind in ("member_pipeline", "merge")}
        conn.commit()
        return logs

    @staticmethod
    def _new_log(conn: psycopg.Connection[Any], kind: str) -> int:
        row = conn.execute(
            "INSERT INTO public.unified_merge_logs (run_kind) VALUES (%s) RETURNING id", (kind,)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _fail_logs(self, ids: list[int], exc: BaseException, *, pipeline_done: bool) -> None:
        """Mark this run's open log rows failed, on a fresh connection (best effort)."""
        reason = _reason(exc)
        try:
            with self.db.connection() as conn:
                conn.execute(
                    """
                    UPDATE public.unified_merge_logs
                    SET status = 'failed', finished_at = clock_timestamp(),
                        error_message = CASE WHEN run_kind = 'member_pipeline' AND %s
                                             THEN 'rolled back with the merge: ' || %s
                                             ELSE %s END
                    WHERE id = ANY(%s) AND status = 'running'
                    """,
                    (pipeline_done, reason, reason, ids),
                )
        except (psycopg.Error, ConnectError) as err:
            log.warning("merge.log_not_updated", reason=reason, error=str(err))


def _call(conn: psycopg.Connection[Any], function: str, options: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute(
        sql.SQL("SELECT public.{}(%s)").format(sql.Identifier(function)), (Jsonb(options),)
    ).fetchone()
    value = row[0] if row else None
    return dict(value) if isinstance(value, dict) else {}


def _clear_work(conn: psycopg.Connection[Any]) -> None:
    """Drop the merge's work tables (schema syncpipe_work) before the transaction commits."""
    conn.execute("SELECT syncpipe_internal.merge_work_clear()")


def _merge_batch(
    conn: psycopg.Connection[Any], options: dict[str, Any], lock_timeout: float
) -> dict[str, Any]:
    """``run_unified_merge_batch(options)``, waiting at most ``lock_timeout`` seconds
    (SYNCPIPE_LOCK_TIMEOUT) for a row another session holds locked: the batch writes only rows
    that a person or the API may be editing (agents, lineage, review items), and gives up on an
    edit left open rather than hang. (Not the member pipeline, which may wait out a load's
    transaction, nor the steps of SYNCPIPE_PIPELINE_STEPS: the setting is put back after.)"""
    row = conn.execute("SELECT current_setting('lock_timeout')").fetchone()
    conn.execute(
        "SELECT set_config('lock_timeout', %s, true)", (lock_timeout_setting(lock_timeout),)
    )
    counts = _call(conn, "run_unified_merge_batch", options)
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (row[0] if row else "0",))
    if counts.get("status") == "failed" and counts.get("sqlstate") == "55P03":
        # (the batch caught its error: the transaction can still ask who writes that table)
        # ('while locking tuple (3,7) in relation "t"': the tuple's id, then the table's name
        # in the quotes of the server's language, «t» or »t« say)
        table = re.search(
            r'\(\d+,\d+\)\D*?["«»„“]([^"«»„“]+)["«»„“]', str(counts.get("context") or "")
        )
        if table:
            counts["held_by"] = describe_row_holders(conn, table.group(1))
            counts["table"] = table.group(1)
    return counts


def _raise_if_failed(
    what: str, counts: dict[str, Any], phase: str | None, committed: int, settings: Settings
) -> None:
    """Raise when a function caught its own error and returned ``status = failed``."""
    if counts.get("status") != "failed":
        return
    where = f' in phase "{phase}"' if phase else ""
    if counts.get("sqlstate") == "55P03":  # lock_not_available: lock_timeout reached
        row = (
            f"a row of {counts['table']} that another session holds locked ({counts['held_by']})"
            if counts.get("table")
            else "a row another session holds locked (an agent, lineage row or review item "
            "edited in a transaction still open)"
        )
        raise LockTimeoutError(
            f"The {what} waited{where} more than {settings.lock_timeout:g} s for {row} and gave "
            f"up; {_outcome(committed)} (setting SYNCPIPE_LOCK_TIMEOUT)."
        )
    if str(counts.get("sqlstate") or "").startswith("40"):  # deadlock, serialization failure
        raise LockTimeoutError(
            f"The {what} was rolled back{where} to let another session go on: each was waiting "
            f"for rows the other had changed ({counts.get('error')}); {_outcome(committed)}, "
            "and running it again takes the records up."
        )
    resource = resource_error(
        counts.get("sqlstate"), str(counts.get("error") or ""), **_said(phase, committed)
    )
    if resource is not None:
        raise resource
    raise JobFailedError(
        f"The {what} failed and was rolled back: {counts.get('error')} "
        f"(SQLSTATE {counts.get('sqlstate')})."
    )


#: Where the merge's work_mem is set (the functions take it from this setting).
_WORK_MEM = "SYNCPIPE_MERGE_WORK_MEM (the merge's work_mem)"


def _outcome(committed: int) -> str:
    """What a failed run leaves: nothing, or the batches committed before the failing one."""
    if not committed:
        return "nothing was changed"
    return (
        f"the {committed} batch(es) committed before it stay and the rest was rolled back "
        "(SYNCPIPE_MERGE_BATCH_RECORDS)"
    )


def _resource_of(exc: BaseException, phase: str | None, committed: int) -> ResourceError | None:
    """A server resource exhausted (disk, memory, temp_file_limit, lock table) as one sentence
    naming the phase that was running; None for any other error."""
    if isinstance(exc, ResourceError) or not isinstance(exc, psycopg.Error):
        return None
    return resource_error_of(exc, **_said(phase, committed))


def _canceled(exc: BaseException, phase: str | None, settings: Settings, committed: int) -> str:
    """A canceled merge as one sentence: the phase, and the setting when it was the timeout."""
    where = f' in phase "{phase}"' if phase else ""
    setting = f"SYNCPIPE_STATEMENT_TIMEOUT (now {settings.statement_timeout:g} s; 0 for none)"
    text = str(exc)
    if not settings.statement_timeout or "user request" in text:
        remedy = "run it again"
    elif "statement timeout" in text:
        remedy = f"raise {setting} and run it again"
    else:  # (a server speaking another language: its words do not tell which cancel it was)
        remedy = f"if it was the statement timeout, raise {setting}; run it again"
    return f"The merge was canceled{where} ({first_line(exc)}): {remedy}; {_outcome(committed)}."


def _said(phase: str | None, committed: int) -> dict[str, Any]:
    """How a failed merge is named in a sentence of :mod:`syncpipe.db.errors`."""
    return {
        "job": "The merge",
        "phase": phase,
        "outcome": _outcome(committed),
        "work_mem": _WORK_MEM,
    }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by the user"
    return first_line(exc)


def _log_fields(result: MergeResult) -> dict[str, Any]:
    merge = result.merge
    return {
        "dry_run": result.dry_run,
        "seconds": round(result.seconds, 3),
        "members_inserted": result.pipeline.get("inserted"),
        "pending": merge.get("pending"),
        "agents_created": merge.get("agents_created"),
        "agents_joined": merge.get("agents_joined"),
        "review_items_added": merge.get("review_items_added"),
    }
