"""The driver of one file's load: check, resume, stream batches to parallel COPY streams, finish.

1. The header is checked (``header``) and the ledger asked whether this content was loaded
   before (skipped, or its rejects reported again until they are accepted) or whether an
   earlier run of this very file was cut short (resumed after its committed batches).
2. The body is read in batches of about ``SYNCPIPE_LOAD_BATCH_ROWS`` whole records (``scan``),
   hashed and screened on this thread, and handed to ``SYNCPIPE_LOAD_STREAMS`` streams, each
   on its own connection. Each batch is one transaction: its rows, its rejects and its ledger
   row commit together (``fast``, ``slow``, ``lane``).
3. The ledger row is completed and the reject file written from the ledger (``rejects``).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.core.errors import ConnectError, LockTimeoutError
from syncpipe.db.database import Database
from syncpipe.db.errors import first_line, lost_error
from syncpipe.db.locks import describe_row_holders, lock_timeout_setting
from syncpipe.logs import get_logger
from syncpipe.services.load import claim, ledger
from syncpipe.services.load.copying import copy_bisect, encode_records
from syncpipe.services.load.dupes import duplicate_reason, key_text, other_file_reason
from syncpipe.services.load.errors import BatchRefused, is_lost, lasting, refusal
from syncpipe.services.load.fast import Outcome, copy_around, copy_batch, upsert_batch
from syncpipe.services.load.header import HeaderProblem, check_header
from syncpipe.services.load.lane import Lane, LaneAborted
from syncpipe.services.load.records import Record, Reject, parse_records
from syncpipe.services.load.rejects import reason_key, reject_path, write_rejects
from syncpipe.services.load.scan import (
    MAX_LINE_BYTES,
    BatchReader,
    Screen,
    screen_batch,
    strip_trailing_blank_lines,
)
from syncpipe.services.load.state import BatchWork, FileContext, FileMode
from syncpipe.services.load.tables import read_table_spec
from syncpipe.services.load.upsert import Target

log = get_logger(__name__)

#: Called with (bytes read, rows read) increments.
ProgressFn = Callable[[int, int], None]
#: A header line longer than this is not a header.
MAX_HEADER_BYTES = 1024 * 1024
#: The largest batch (bytes): a file of wide rows (team pages) is cut by size, not by rows.
MAX_BATCH_BYTES = 16 * 1024 * 1024


@dataclass
class FileResult:
    """What loading one file did."""

    path: str
    table: str
    status: str  # loaded | loaded_with_rejects | skipped | failed | dry_run
    sha256: str = ""
    size_bytes: int = 0
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    reject_file: str | None = None
    rejects_accepted: bool = False
    resumed_batches: int = 0
    duration_s: float = 0.0
    message: str = ""
    #: the file failed waiting for a lock or another load's claim (the load's exit code 3)
    locked: bool = False

    def count(self, totals: ledger.Totals) -> None:
        """Take the file's counts from its ledger (its batches summed)."""
        self.rows_read, self.inserted = totals.rows_read, totals.inserted
        self.updated, self.unchanged = totals.updated, totals.unchanged
        self.rejected = totals.rejected

    @property
    def rows_per_s(self) -> float:
        """Rows read per second."""
        return self.rows_read / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failed(self) -> bool:
        """True when the file failed or holds rejects nobody accepted."""
        return self.status == "failed" or (self.rejected > 0 and not self.rejects_accepted)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape used by ``load --json`` and the run report."""
        return {
            "file": self.path,
            "table": self.table,
            "status": self.status,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "rejected_by_reason": self.rejected_by_reason,
            "reject_file": self.reject_file,
            "rejects_accepted": self.rejects_accepted,
            "resumed_batches": self.resumed_batches,
            "duration_s": round(self.duration_s, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "message": self.message,
        }


@dataclass(frozen=True)
class LoadOptions:
    """What every file of one ``syncpipe load`` shares."""

    db: Database
    env: str
    logs_dir: Path
    batch_rows: int
    streams: int
    force: bool
    dry_run: bool
    accept_rejects: bool
    codec: str
    pg_encoding: str
    progress: ProgressFn | None
    #: seconds a batch may wait for rows another transaction holds
    lock_timeout: float = 30.0
    #: set when the user interrupts the load (Ctrl-C): every file stops at its next batch
    stop: threading.Event = field(default_factory=threading.Event)
    #: a dry run's keys so far, per table: (file name, {hash of key: line}) per file, since
    #: its batches are rolled back and cannot see each other's rows
    dry_keys: dict[str, list[tuple[str, dict[int, int]]]] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Tally:
    """Counts of this run's batches (the ledger sums all runs' batches)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows_read = self.inserted = self.updated = self.unchanged = 0
        self.by_reason: dict[str, int] = {}
        self.rejects: list[tuple[int, str, str, str, str]] = []

    def add(self, work: BatchWork) -> None:
        with self.lock:
            self.rows_read += work.row.rows_read
            self.inserted += work.row.inserted
            self.updated += work.row.updated
            self.unchanged += work.row.unchanged
            for r in work.rejects:
                key = reason_key(r.reason, r.column)
                self.by_reason[key] = self.by_reason.get(key, 0) + 1
                raw = r.raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
                self.rejects.append((r.line, r.column, r.value, r.reason, raw))


class FileLoad:
    """Loading one file: ``run`` drives it from header to ledger."""

    def __init__(self, options: LoadOptions, path: Path, table: str) -> None:
        self.o = options
        self.path = path
        self.table = table
        self.result = FileResult(path=str(path), table=table, status="loaded")
        self.t0 = time.perf_counter()
        self._held: int | None = None  # the ledger row this load claimed, until it is done
        self._file_id: int | None = None  # the file's ledger row (not on a dry run)

    def run(self) -> FileResult:
        """Load the file; the result says what happened."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            return self._fail(f"cannot be read: {exc.strerror}")
        self.result.size_bytes = stat.st_size
        try:
            return self._run(stat.st_mtime_ns)
        except LockTimeoutError as exc:  # (waiting for another load's claim)
            return self._gave_up(exc)
        except LaneAborted as exc:
            cause = exc.__cause__
            if isinstance(cause, BatchRefused):
                self._release()
                return self._fail(str(cause))
            if isinstance(cause, LockTimeoutError):
                return self._gave_up(cause)
            if isinstance(cause, BaseException):
                if not isinstance(cause, psycopg.OperationalError | ConnectError):
                    self._release()
                raise self._lost(cause) from cause
            raise
        except (psycopg.OperationalError, ConnectError) as exc:
            raise self._lost(exc) from exc
        except psycopg.Error as exc:  # (the ledger's rows, say, as a read-only role)
            if not lasting(exc):
                raise
            self._release()
            return self._fail(str(BatchRefused(None, exc, self.o.db.info.user)))
        except BaseException:
            self._release()
            raise

    def _wait_for(self, other: ledger.Claim | str, waited: float | None) -> float:
        """Another load holds the table: wait a little (saying so the first time), or give
        up after the lock timeout; since when this load waits."""
        now = time.monotonic()
        if waited is None:
            waited = now
            log.warning(
                "load.waiting",
                file=str(self.path),
                table=self.table,
                other=claim.describe(other),
                up_to_s=self.o.lock_timeout,
            )
        if now - waited >= self.o.lock_timeout:
            raise LockTimeoutError(
                f"{self.table} is being {claim.doing(other)} ({claim.describe(other)}); "
                f"gave up waiting to load {self.path.name} after {self.o.lock_timeout:g} s "
                "(setting SYNCPIPE_LOCK_TIMEOUT): run this load again when that one is done."
            )
        pause = min(1.0, 0.1 + 0.2 * (now - waited), max(0.0, waited + self.o.lock_timeout - now))
        if self.o.stop.wait(pause):  # (Ctrl-C while another table's file waits)
            raise KeyboardInterrupt
        return waited

    def _release(self) -> None:
        """Give up this load's claim (it stopped): the next load of the table need not wait
        for it to fall silent. Best effort: a lost database keeps it until then."""
        if self._held is None:
            return
        file_id, self._held = self._held, None
        try:
            with self.o.db.connection() as conn:
                ledger.release(conn, file_id, claim.this_load(self.o.lock_timeout).token)
                conn.commit()
        except (psycopg.Error, ConnectError):
            pass

    def _lost(self, exc: BaseException) -> BaseException:
        """A lost database as one sentence naming the file (exit 3); anything else as is."""
        if not isinstance(exc, psycopg.Error | ConnectError):
            return exc
        if isinstance(exc, ConnectError):  # (its own reason, not its sentence about a batch)
            reason = exc.reason or str(exc).rstrip(".")
        else:
            reason = first_line(exc)
        return lost_error(
            self.o.db.target,
            f"while loading {self.path.name} ({reason[:200]})",
            "the batches committed so far are kept: run the load again to resume",
        )

    def _run(self, mtime_ns: int) -> FileResult:
        o = self.o
        started = datetime.now(UTC)
        try:
            with self.path.open("rb") as fh:
                first = fh.readline(MAX_HEADER_BYTES + 1)
        except OSError as exc:  # (no read permission: the folder's other files still load)
            return self._fail(f"cannot be read: {exc.strerror}")
        if len(first) > MAX_HEADER_BYTES:
            return self._fail(f"line 1 is longer than {MAX_HEADER_BYTES:,} bytes; not a header")
        me = claim.this_load(o.lock_timeout)
        waited: float | None = None  # since when this load waits for another's claim
        with o.db.connection() as conn:
            spec = read_table_spec(conn, self.table)
            header = check_header(first, spec, o.codec)
            if isinstance(header, HeaderProblem):
                return self._fail(header.message)
            while (other := claim.take(conn, self.table, me)) is not None:
                conn.commit()  # (lets the other load take and give up claims meanwhile)
                waited = self._wait_for(other, waited)
            if waited is not None:  # (the file's time is its own, not the wait's)
                self.t0 = time.perf_counter()
            # An unfinished load of this very file (one that failed, say, a --force among
            # them) is resumed, not skipped for an earlier load of the same content.
            resumable: int | None = None
            if not o.dry_run:
                resumable = ledger.find_loading(
                    conn, self.table, self.path.resolve(), self.result.size_bytes, mtime_ns, o.codec
                )
            # (under the claims' lock: a load of this file that finished meanwhile is seen)
            if resumable is None and ledger.same_size_loaded(
                conn, self.table, self.result.size_bytes
            ):
                self.result.sha256 = file_sha256(self.path)
                previous = ledger.find_loaded(conn, self.table, self.result.sha256, o.codec)
                if previous is not None and not o.force and not o.dry_run:
                    return self._again(conn, previous)
            file_id: int | None = None
            checking: int | None = None
            done: list[ledger.DoneBatch] = []

            def new_row(status: str) -> int:  # (the file's ledger row, held by this load)
                return ledger.start_file(
                    conn,
                    path=self.path.resolve(),
                    table=self.table,
                    size=self.result.size_bytes,
                    mtime_ns=mtime_ns,
                    body_offset=header.size,
                    env=o.env,
                    encoding=o.codec,
                    started=started,
                    holder=me,
                    status=status,
                )

            if o.dry_run:  # (it holds the table too: a load begun meanwhile waits for it)
                checking = new_row("checking")
            else:
                file_id = resumable
                if file_id is not None and o.force:
                    ledger.forget(conn, [file_id])
                    file_id = None
                if file_id is not None:
                    ledger.hold(conn, file_id, me)
                    done = ledger.done_batches(conn, file_id)
                else:
                    file_id = new_row("loading")
            conn.commit()
        self._held = file_id if file_id is not None else checking
        self._file_id = file_id
        ctx = FileContext(
            path=self.path,
            spec=spec,
            header=header,
            target=Target(spec, header),
            codec=o.codec,
            pg_encoding=o.pg_encoding,
            file_id=file_id,
            dry_run=o.dry_run,
        )
        self.result.resumed_batches = len(done)
        if done:
            log.info("load.resume", file=str(self.path), committed_batches=len(done))
        tally = _Tally()
        sha = self._stream(ctx, first, done, tally)
        return self._finish(ctx, sha, tally)

    # -- streaming ---------------------------------------------------------------------------
    def _stream(
        self, ctx: FileContext, first: bytes, done: list[ledger.DoneBatch], tally: _Tally
    ) -> str:
        o = self.o
        hasher = hashlib.sha256(first)
        lane = Lane()
        mode = FileMode()
        # A dry run's batches go one after the other: its keys are compared in file order.
        streams = 1 if o.dry_run else max(1, o.streams)
        dry_keys: dict[int, int] = {}
        if o.dry_run:
            o.dry_keys.setdefault(self.table, []).append((self.path.name, dry_keys))
        todo: queue.Queue[BatchWork | None] = queue.Queue(maxsize=streams)
        workers = [
            threading.Thread(
                target=self._worker,
                args=(ctx, lane, mode, todo, tally),
                name=f"load-{i}",
                daemon=True,
            )
            for i in range(streams)
        ]
        for w in workers:
            w.start()
        size = self.result.size_bytes
        limits = ctx.spec.fmt.limits.values() if ctx.spec.fmt else ()
        screen = Screen(member_emails="members" in limits)
        try:
            with self.path.open("rb") as fh:
                fh.seek(len(first))
                reader = BatchReader(
                    fh,
                    first_line=2,
                    offset=len(first),
                    target_rows=o.batch_rows,
                    max_batch_bytes=MAX_BATCH_BYTES,
                    # the first batches small, so that every stream starts within a fraction
                    # of a second instead of waiting for a whole batch to be read
                    # (at least 64 kB: past 24 streams the first caps were 0 bytes)
                    ramp=[
                        max(MAX_BATCH_BYTES >> (streams + 1 - i), 64 * 1024)
                        for i in range(streams + 1)
                    ],
                    end=size,  # and the last ones a share of what is left: they end together
                    streams=streams,
                    on_read=hasher.update,
                    skip=[(b.start, b.end, b.lines) for b in done],
                )
                skipped = sum(b.end - b.start for b in done)
                self._tick(skipped, 0)
                for seq, batch in enumerate(reader):
                    if o.stop.is_set():
                        raise KeyboardInterrupt
                    work = BatchWork.of(seq, batch)
                    if batch.end_offset >= size:
                        batch.data = strip_trailing_blank_lines(batch.data)
                    if not batch.data:
                        self._tick(work.row.end - work.row.start, 0)
                        continue
                    screen_batch(batch, screen)
                    lane.dispatch(seq)
                    while True:
                        if lane.failure is not None:
                            raise LaneAborted from lane.failure
                        try:
                            todo.put(work, timeout=0.5)
                            break
                        except queue.Full:
                            continue
        except BaseException as exc:
            lane.fail(exc)
            raise
        finally:
            for _ in workers:
                while any(w.is_alive() for w in workers):
                    try:
                        todo.put(None, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            for w in workers:
                w.join()
        if lane.failure is not None:
            raise LaneAborted from lane.failure
        return hasher.hexdigest()

    def _worker(
        self,
        ctx: FileContext,
        lane: Lane,
        mode: FileMode,
        todo: queue.Queue[BatchWork | None],
        tally: _Tally,
    ) -> None:
        try:
            with self.o.db.connection() as conn:
                conn.commit()  # (each batch is a transaction of its own, begun below)
                conn.autocommit = True
                try:
                    while (work := todo.get()) is not None:
                        if lane.failure is not None:
                            continue
                        lane.start(work.seq)
                        try:
                            self._process(conn, ctx, lane, mode, work)
                            if ctx.dry_run:
                                self._dry_repeats(conn, ctx, work)
                        finally:
                            lane.finish(work.seq)
                        tally.add(work)
                        self._tick(work.row.end - work.row.start, work.row.rows_read)
                finally:
                    conn.autocommit = False
        except LaneAborted:
            pass
        except BaseException as exc:
            lane.fail(exc)

    def _process(
        self,
        conn: psycopg.Connection[Any],
        ctx: FileContext,
        lane: Lane,
        mode: FileMode,
        work: BatchWork,
    ) -> None:
        """One batch: direct COPY in parallel when it can, the exclusive lane when it must."""
        if work.batch.overlong:  # (a line too long to read: rejected whole, nothing sent)
            deadline = time.monotonic() + max(self.o.lock_timeout, 1.0)
            while self._attempt(conn, ctx, work, lambda: _reject_overlong(work)).kind != "done":
                if time.monotonic() > deadline:
                    raise LockTimeoutError(
                        f"The load of {self.path.name} could not record its line "
                        f"{work.batch.first_line} as rejected within {self.o.lock_timeout:g} s; "
                        "the batches committed so far are kept: run the load again to resume."
                    )
                time.sleep(0.1)
            return
        outcome: Outcome | None = None
        if not mode.upsert:
            if work.batch.suspect:
                outcome = self._attempt(
                    conn, ctx, work, lambda: copy_around(conn, ctx, work, None, exclusive=False)
                )
            else:
                outcome = self._attempt(conn, ctx, work, lambda: copy_batch(conn, ctx, work))
                if outcome.kind == "data":
                    bad = outcome.record
                    outcome = self._attempt(
                        conn, ctx, work, lambda: copy_around(conn, ctx, work, bad, exclusive=False)
                    )
        if outcome is not None and outcome.kind == "done":
            return
        with lane.exclusive(work.seq):
            deadline = time.monotonic() + max(self.o.lock_timeout, 1.0)
            tries = 0
            while True:
                if mode.upsert or outcome is None or outcome.kind in ("unique", "retry"):
                    outcome = self._attempt(
                        conn, ctx, work, lambda: upsert_batch(conn, ctx, work), exclusive=True
                    )
                    if outcome.kind == "done" and work.row.updated + work.row.unchanged:
                        mode.switch_to_upsert()  # keys of an earlier load: upsert from now on
                else:
                    outcome = self._attempt(
                        conn, ctx, work, _around(conn, ctx, work, outcome), exclusive=True
                    )
                if outcome.kind == "done":
                    return
                # Rows held by another transaction (a merge, an edit left open), or a
                # deadlock with another load: wait a little and try the batch again, up to
                # the lock timeout.
                tries += 1
                if tries == 1:
                    log.info(
                        "load.rows_locked",
                        table=ctx.spec.name,
                        file=str(self.path),
                        line=work.batch.first_line,
                        waiting_s=self.o.lock_timeout,
                    )
                if time.monotonic() > deadline:
                    holders = describe_row_holders(conn, ctx.spec.name, locking=True)
                    raise LockTimeoutError(
                        f"Rows of {ctx.spec.name} stayed locked by another transaction "
                        f"({holders}) for more than "
                        f"{self.o.lock_timeout:g} s while loading {self.path.name} (line "
                        f"{work.batch.first_line}; setting SYNCPIPE_LOCK_TIMEOUT); the "
                        "batches committed so far are kept: run the load again to resume."
                    )
                time.sleep(min(0.05 * 2**tries, 1.0))

    def _attempt(
        self,
        conn: psycopg.Connection[Any],
        ctx: FileContext,
        work: BatchWork,
        step: Callable[[], Outcome],
        *,
        exclusive: bool = False,
    ) -> Outcome:
        """One try of a batch in its own transaction: committed with its ledger row when it
        is done, rolled back otherwise."""
        work.reset()
        outcome = Outcome("retry")
        try:
            with conn.transaction():
                # The statement timeout and the batch's settings, for this transaction only,
                # in one statement: the rows' load_file_id (sql/ddl/110; '' on a dry run,
                # which writes nothing) and the file's encoding. No JIT: a batch's statements
                # probe an index per row, which the planner prices high enough to compile
                # them, 25-30 ms a statement that their execution never wins back.
                settings = {
                    "synchronous_commit": "off",
                    "jit": "off",
                    "syncpipe.load_file_id": "" if ctx.file_id is None else str(ctx.file_id),
                }
                if ctx.pg_encoding != "UTF8":
                    settings["client_encoding"] = ctx.pg_encoding
                self.o.db.begin(conn, **settings)
                lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
                conn.execute(
                    f"SELECT {lock}(%s, hashtext(%s))",
                    (ledger.BATCH_NAMESPACE, ctx.spec.name),
                )
                # Then a wait inside the database (for a key another open transaction is
                # inserting, say) ends too: the batch is tried again, then given up. (Not
                # the wait above, for this load's own batches in the other streams.)
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, true)",
                    (lock_timeout_setting(self.o.lock_timeout),),
                )
                outcome = step()
                if outcome.kind != "done" or ctx.dry_run:
                    raise psycopg.Rollback()
                if ctx.file_id is not None and not ledger.commit_batch(
                    conn,
                    ctx.file_id,
                    claim.this_load(self.o.lock_timeout).token,
                    work.row,
                    work.rejects,
                    work.xids,
                    work.own_xid,
                ):
                    raise LockTimeoutError(
                        f"Another syncpipe load took over the load of {self.path.name}, having "
                        "found it stalled (no batch committed for longer than it allows itself, "
                        f"line {work.batch.first_line} not done); the batches committed so far "
                        "are kept, and that load goes on from them."
                    )
        except psycopg.Error as exc:
            if is_lost(conn, exc):
                raise
            if refusal(exc) == "data":  # (no lock, deadlock or key of another transaction)
                raise BatchRefused(work.batch.first_line, exc, conn.info.user) from exc
            return Outcome("retry")
        return outcome

    def _dry_repeats(
        self, conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork
    ) -> None:
        """A dry run's batch (rolled back, so later batches cannot see its rows): reject the
        rows whose key an earlier batch or file of this run loaded, as the load would, and take
        each off the count the server put it in."""
        files = self.o.dry_keys.get(self.table, [])
        mine = files[-1][1] if files else {}
        earlier = files[:-1]
        rejected = {r.line for r in work.rejects}
        names = ", ".join(ctx.spec.primary_key)
        ncols = len(ctx.header.names)
        repeats: list[Record] = []
        for record in parse_records(work.batch.data, work.batch.first_line, ctx.codec, ncols):
            fields = record.fields
            if fields is None or len(fields) != ncols or record.line in rejected:
                continue
            key = [fields[i] for i in ctx.header.key_index]
            h = hash(key_text(ctx.spec, key))
            reason = None
            if h in mine:
                reason = duplicate_reason(key, mine[h])
            else:
                for name, keys in earlier:
                    if name != self.path.name and h in keys:  # (same name: the same file)
                        reason = other_file_reason(key, name, keys[h])
                        break
            if reason is None:
                mine[h] = record.line
                continue
            work.reject(Reject(record.line, names, reason, record.raw))
            repeats.append(record)
        if repeats:
            # The server counted each against the table as it was before the batch, as it is
            # again now that the batch is rolled back.
            inserted, updated, unchanged = self._counted_as(conn, ctx, repeats)
            row = work.row
            row.inserted = max(row.inserted - inserted, 0)
            row.updated = max(row.updated - updated, 0)
            row.unchanged = max(row.unchanged - unchanged, 0)

    def _counted_as(
        self, conn: psycopg.Connection[Any], ctx: FileContext, records: list[Record]
    ) -> tuple[int, int, int]:
        """How a batch's upsert counts ``records`` (inserted, updated, unchanged), against the
        table as it is; nothing is written."""
        with conn.transaction(force_rollback=True):
            settings = {"client_encoding": ctx.pg_encoding} if ctx.pg_encoding != "UTF8" else {}
            self.o.db.begin(conn, **settings)
            ctx.target.create_stage(conn)
            copy_bisect(
                conn,
                ctx.target.copy_stage_lines,
                records,
                lambda chunk: encode_records(chunk, ctx.codec),
            )
            return ctx.target.counted_as(conn)

    # -- the end -----------------------------------------------------------------------------
    def _finish(self, ctx: FileContext, sha: str, tally: _Tally) -> FileResult:
        o, r = self.o, self.result
        r.sha256 = sha
        r.duration_s = time.perf_counter() - self.t0
        r.rejected_by_reason = dict(tally.by_reason)
        if ctx.file_id is None:  # a dry run
            r.status = "dry_run"
            r.rows_read, r.inserted, r.updated, r.unchanged = (
                tally.rows_read,
                tally.inserted,
                tally.updated,
                tally.unchanged,
            )
            r.rejected = len(tally.rejects)
            if tally.rejects:
                path = reject_path(o.logs_dir, self.path, sha, self.table, dry_run=True)
                write_rejects(path, self.path, sorted(tally.rejects))
                r.reject_file = str(path)
            self._release()
            return r
        path = reject_path(o.logs_dir, self.path, sha, self.table)
        with o.db.connection() as conn:
            totals = ledger.finish_file(
                conn,
                ctx.file_id,
                sha256=sha,
                duration_ms=round(r.duration_s * 1000),
                reject_file=str(path),
                accept_rejects=o.accept_rejects,
            )
            conn.commit()
            self._held = None
            rows = ledger.rejects_of(conn, ctx.file_id) if totals.rejected else []
        r.count(totals)
        if rows:
            write_rejects(path, self.path, rows)
            r.reject_file = str(path)
            r.status = "loaded_with_rejects"
            r.rejects_accepted = o.accept_rejects
            if not r.rejected_by_reason or r.resumed_batches:
                r.rejected_by_reason = _by_reason(rows)
        log.info(
            "load.file_done",
            **{k: v for k, v in r.to_dict().items() if k != "rejected_by_reason"},
        )
        return r

    def _again(self, conn: psycopg.Connection[Any], previous: ledger.LoadedFile) -> FileResult:
        """The same content was loaded before: skip it, or report its rejects again."""
        r = self.result
        when = previous.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        r.duration_s = time.perf_counter() - self.t0
        self._tick(r.size_bytes, 0)
        if previous.status == "loaded_with_rejects" and not previous.rejects_accepted:
            rows = ledger.rejects_of(conn, previous.id)
            if self.o.accept_rejects:
                ledger.accept_rejects(conn, previous.id)
                conn.commit()
                r.status = "skipped"
                r.message = (
                    f"already loaded on {when} ({previous.rows_read:,} rows); its "
                    f"{previous.rejected:,} rejected row(s) are now accepted"
                )
                return r
            path = reject_path(self.o.logs_dir, self.path, r.sha256, self.table)
            write_rejects(path, self.path, rows)
            r.status = "loaded_with_rejects"
            r.rejected = previous.rejected
            r.rejected_by_reason = _by_reason(rows)
            r.reject_file = str(path)
            r.message = (
                f"already loaded on {when} with {previous.rejected:,} rejected row(s), listed "
                f"in {path}; fix them and load the file again, or pass --accept-rejects"
            )
            return r
        r.status = "skipped"
        extra = f", {previous.rejected:,} rejected and accepted" if previous.rejected else ""
        r.message = (
            f"already loaded on {when} ({previous.rows_read:,} rows{extra}); same SHA-256, "
            "skipped (use --force to load it again)"
        )
        return r

    def _gave_up(self, exc: LockTimeoutError) -> FileResult:
        """The file waited for a lock or a claim longer than the lock timeout: it fails, the
        batches it committed kept, and the load's other tables go on (exit code 3)."""
        self._release()
        self.result.locked = True
        return self._fail(str(exc))

    def _fail(self, message: str) -> FileResult:
        r = self.result
        r.status = "failed"
        r.message = message
        r.duration_s = time.perf_counter() - self.t0
        if self._file_id is not None:
            # What its committed batches hold, this run's and a resumed run's: in the table,
            # and counted, though the file failed. (Best effort: a lost database says 0.)
            try:
                with self.o.db.connection() as conn:
                    totals = ledger.committed(conn, self._file_id)
                    conn.commit()
            except (psycopg.Error, ConnectError):
                pass
            else:
                r.count(totals)
        log.warning("load.file_failed", file=str(self.path), error=message)
        self._tick(r.size_bytes, 0)
        return r

    def _tick(self, nbytes: int, rows: int) -> None:
        if self.o.progress:
            self.o.progress(nbytes, rows)


def _around(
    conn: psycopg.Connection[Any], ctx: FileContext, work: BatchWork, previous: Outcome
) -> Callable[[], Outcome]:
    """The exclusive retry of a batch in pieces, starting at the record refused before."""
    bad = previous.record if previous.kind == "data" else None
    return lambda: copy_around(conn, ctx, work, bad, exclusive=True)


def _by_reason(rows: list[tuple[int, str, str, str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        key = reason_key(row[3], row[1])
        out[key] = out.get(key, 0) + 1
    return out


def _reject_overlong(work: BatchWork) -> Outcome:
    """The batch of one line longer than a line may be (its start only was kept): rejected."""
    size = work.batch.overlong
    work.row.rows_read += 1
    work.reject(
        Reject(
            work.batch.first_line,
            "",
            f"the line is {size:,} bytes long, over the {MAX_LINE_BYTES // 2**20} MiB a line "
            "may have",
            work.batch.data,
        )
    )
    return Outcome("done")
