"""LoadService: CSV files into their tables at COPY speed, without losing or duplicating a row.

Per file, in one transaction (so a killed load leaves the tables as they were):

1. The file's SHA-256 is looked up in the load ledger; a file already loaded is skipped.
2. The header is checked against the table before any row is written.
3. The body is streamed in batches of whole records (``batches.py``). Each batch is COPYed, as
   raw bytes, inside a savepoint:
   * *direct* mode (a first load): straight into the table; the server checks types, JSON
     shapes (CHECK constraints) and keys;
   * *upsert* mode (once a key already exists): into a temporary staging table, then
     ``INSERT ... ON CONFLICT DO UPDATE ... WHERE IS DISTINCT FROM`` so unchanged rows are
     not touched and changed rows are updated.
4. A batch the server refuses goes to the slow path (``records.py``): parsed and validated row
   by row in Python; bad rows go to the reject file with line, column and reason; the good
   rows are staged and upserted. Only that batch pays for it.
5. A key seen twice in one file keeps its first row; later ones are rejected, naming the line
   of the first.
6. The ledger records the file's name, checksum and counts.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from syncpipe.core.errors import ConfigError, ConnectError, NotDeployedError
from syncpipe.db.database import Database
from syncpipe.db.ledger import ledger_exists
from syncpipe.db.queries import qualified
from syncpipe.logs import get_logger
from syncpipe.services.load.batches import Batch, BatchReader, prefetch
from syncpipe.services.load.records import (
    Record,
    Reject,
    check_record,
    parse_records,
    validators_for,
)
from syncpipe.services.load.rejects import RejectWriter
from syncpipe.services.load.tables import expand_paths, read_table_spec
from syncpipe.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")

#: Python codec name -> PostgreSQL client_encoding.
PG_ENCODINGS = {
    "utf-8": "UTF8",
    "latin-1": "LATIN1",
    "iso8859-1": "LATIN1",
    "iso8859-15": "LATIN9",
    "cp1252": "WIN1252",
    "cp1251": "WIN1251",
    "cp1250": "WIN1250",
    "iso8859-2": "LATIN2",
    "cp437": "WIN437",
    "mac-roman": "MACROMAN",
}

#: Called with (bytes read, rows read) increments.
ProgressFn = Callable[[int, int], None]

_STAGE = "_syncpipe_stage"
#: Refused records one chunk may split around before the rest of it takes the slow path.
_MAX_SPLITS = 16
#: Reading unit (whole records) handed over by the reader thread.
_BLOCK_BYTES = 1024 * 1024
#: A COPY piece doubles after each clean piece, up to this size (it is streamed, not held).
_MAX_PIECE_BYTES = 1024 * 1024 * 1024
#: Chunks held in memory (upserts, a refused piece loaded again) are at most this big.
_CHUNK_BYTES = 16 * 1024 * 1024
_SEEN = "_syncpipe_seen"


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
    duration_s: float = 0.0
    message: str = ""
    slow_batches: int = 0

    @property
    def rows_per_s(self) -> float:
        """Rows read per second."""
        return self.rows_read / self.duration_s if self.duration_s > 0 else 0.0

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
            "duration_s": round(self.duration_s, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "message": self.message,
        }


@dataclass
class LoadResult:
    """All files of one ``syncpipe load``."""

    files: list[FileResult] = field(default_factory=list)
    skipped_paths: list[str] = field(default_factory=list)
    dry_run: bool = False
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        """True when a file failed or a row was rejected (exit code 1)."""
        return any(f.status == "failed" or f.rejected for f in self.files)

    def totals(self) -> dict[str, int]:
        """Sums over files."""
        keys = ("rows_read", "inserted", "updated", "unchanged", "rejected")
        return {k: sum(getattr(f, k) for f in self.files) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of ``syncpipe load --json``."""
        return {
            "dry_run": self.dry_run,
            "ok": not self.failed,
            "totals": self.totals(),
            "files": [f.to_dict() for f in self.files],
            "not_matched": self.skipped_paths,
            "duration_s": round(self.duration_s, 3),
        }


def resolve_encoding(name: str) -> tuple[str, str]:
    """(Python codec, PostgreSQL encoding) for ``--encoding``; ConfigError if unsupported."""
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise ConfigError(f"--encoding {name!r} is not an encoding Python knows.") from None
    pg = PG_ENCODINGS.get(codec)
    if pg is None:
        known = ", ".join(sorted(PG_ENCODINGS))
        raise ConfigError(f"--encoding {name!r} is not supported for loading (use one of {known}).")
    return codec, pg


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class LoadService:
    """Loads CSV files on the shared pool."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._lock = threading.Lock()

    def load(
        self,
        paths: list[Path],
        *,
        table: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        encoding: str = "utf-8",
        jobs: int | None = None,
        progress: ProgressFn | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> LoadResult:
        """Load every file (folders expanded); the result says what happened to each."""
        t0 = time.perf_counter()
        codec, pg_encoding = resolve_encoding(encoding)
        if table is not None and "." not in table:
            table = f"public.{table}"
        files, skipped = expand_paths(paths, self.settings.csv_sources, table)
        if not files:
            raise ConfigError(
                "No CSV file to load in "
                + ", ".join(str(p) for p in paths)
                + f" (patterns: {', '.join(self.settings.csv_sources)})."
            )
        with self.db.connection() as conn:
            if not ledger_exists(conn):
                raise NotDeployedError(
                    f"{self.db.target} has not been deployed; run `syncpipe deploy` first."
                )
        if on_total is not None:
            on_total(sum(p.stat().st_size for p, _ in files))
        result = LoadResult(skipped_paths=[str(p) for p in skipped], dry_run=dry_run)
        workers = max(
            1, min(jobs or self.settings.load_jobs, self.settings.pool_max_size, len(files))
        )

        def one(item: tuple[Path, str]) -> FileResult:
            return FileLoad(
                self,
                item[0],
                item[1],
                force=force,
                dry_run=dry_run,
                codec=codec,
                pg_encoding=pg_encoding,
                progress=progress,
            ).run()

        if workers == 1:
            result.files = [one(item) for item in files]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
                result.files = list(pool.map(one, files))
        result.duration_s = time.perf_counter() - t0
        log.info("load.done", files=len(result.files), dry_run=dry_run, **result.totals())
        return result


class FileLoad:
    """Loading one file: the state of its single transaction."""

    def __init__(
        self,
        service: LoadService,
        path: Path,
        table: str,
        *,
        force: bool,
        dry_run: bool,
        codec: str,
        pg_encoding: str,
        progress: ProgressFn | None,
    ) -> None:
        self.service = service
        self.settings = service.settings
        self.path = path
        self.table = table
        self.force = force
        self.dry_run = dry_run
        self.codec = codec
        self.pg_encoding = pg_encoding
        self.progress = progress
        self.result = FileResult(path=str(path), table=table, status="loaded")
        self.upsert_mode = False
        self.piece_xids: list[str] = []  # xmin of rows written by this file's direct COPYs
        self.chunk_bytes = _CHUNK_BYTES
        self.dup_keys: dict[tuple[str, ...], list[Reject]] = {}
        self.rejects = RejectWriter(self.settings.logs_dir / "rejects", path, dry_run=dry_run)

    # -- driver ----------------------------------------------------------------------------
    def run(self) -> FileResult:
        t0 = time.perf_counter()
        started = datetime.now(UTC)
        try:
            self.result.size_bytes = self.path.stat().st_size
        except OSError as exc:
            return self._fail(f"cannot be read: {exc.strerror}", t0)
        try:
            with self.service.db.connection() as conn:
                self.spec = read_table_spec(conn, self.table)
                # Hash up front only when the ledger holds a file of the same size (a likely
                # reload to skip); otherwise the hash is computed while streaming.
                if self._same_size_loaded(conn):
                    try:
                        self.result.sha256 = file_sha256(self.path)
                    except OSError as exc:
                        return self._fail(f"cannot be read: {exc.strerror}", t0)
                    if not self.force and not self.dry_run:
                        previous = self._already_loaded(conn)
                        if previous:
                            self.result.status = "skipped"
                            self.result.message = previous
                            self.result.duration_s = time.perf_counter() - t0
                            self._report_progress_skip()
                            return self.result
                with self.path.open("rb") as fh:
                    hasher = hashlib.sha256()
                    header_problem = self._read_header(fh, hasher)
                    if header_problem:
                        return self._fail(header_problem, t0)
                    with conn.transaction(force_rollback=self.dry_run):
                        self._prepare(conn)
                        self._stream(conn, fh, hasher)
                        if not self.result.sha256:
                            self.result.sha256 = hasher.hexdigest()
                        self._resolve_duplicates()
                        self.result.duration_s = time.perf_counter() - t0
                        if not self.dry_run:
                            self._record(conn, started)
        except (psycopg.OperationalError, ConnectError) as exc:
            self.rejects.discard()
            if isinstance(exc, pg_errors.QueryCanceled):
                raise
            reason = str(exc).rstrip(".")
            raise ConnectError(
                f"Lost the database while loading {self.path.name} ({reason}); nothing of that "
                "file was kept: run the load again."
            ) from exc
        except BaseException:
            self.rejects.discard()
            raise
        path = self.rejects.commit()
        self.result.reject_file = str(path) if path else None
        self.result.rejected = self.rejects.count
        self.result.rejected_by_reason = dict(self.rejects.by_reason)
        if self.dry_run:
            self.result.status = "dry_run"
        elif self.result.rejected:
            self.result.status = "loaded_with_rejects"
        self.result.duration_s = time.perf_counter() - t0
        log.info(
            "load.file_done",
            **{k: v for k, v in self.result.to_dict().items() if k not in ("rejected_by_reason",)},
        )
        return self.result

    def _fail(self, message: str, t0: float) -> FileResult:
        self.result.status = "failed"
        self.result.message = message
        self.result.duration_s = time.perf_counter() - t0
        log.warning("load.file_failed", file=str(self.path), error=message)
        self._report_progress_skip()
        return self.result

    def _report_progress_skip(self) -> None:
        self._tick(self.result.size_bytes, 0)

    # -- ledger ----------------------------------------------------------------------------
    def _same_size_loaded(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM syncpipe.load_files WHERE table_name = %s "
            "AND size_bytes = %s)",
            (self.table, self.result.size_bytes),
        ).fetchone()
        return bool(row and row[0])

    def _already_loaded(self, conn: psycopg.Connection[Any]) -> str | None:
        row = conn.execute(
            """
            SELECT finished_at, rows_read, rejected FROM syncpipe.load_files
            WHERE table_name = %s AND sha256 = %s AND encoding = %s ORDER BY id DESC LIMIT 1
            """,
            (self.table, self.result.sha256, self.codec),
        ).fetchone()
        if row is None:
            return None
        when = row[0].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        extra = f", {row[2]} rejected" if row[2] else ""
        return (
            f"already loaded on {when} ({row[1]} rows{extra}); same SHA-256, skipped "
            "(use --force to load it again)"
        )

    def _record(self, conn: psycopg.Connection[Any], started: datetime) -> None:
        r = self.result
        conn.execute(
            """
            INSERT INTO syncpipe.load_files (file_name, file_path, table_name, sha256,
                size_bytes, rows_read, inserted, updated, unchanged, rejected, started_at,
                duration_ms, status, reject_file, env, encoding)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                self.path.name,
                str(self.path.resolve()),
                self.table,
                r.sha256,
                r.size_bytes,
                r.rows_read,
                r.inserted,
                r.updated,
                r.unchanged,
                self.rejects.count,
                started,
                round(r.duration_s * 1000),
                "loaded_with_rejects" if self.rejects.count else "loaded",
                str(self.rejects.path) if self.rejects.count else None,
                self.settings.env,
                self.codec,
            ),
        )

    # -- header ----------------------------------------------------------------------------
    def _read_header(self, fh: Any, hasher: Any) -> str | None:
        first = fh.readline()
        hasher.update(first)
        if not first:
            return "is empty (no header row)"
        self.body_offset = len(first)
        raw = first.removeprefix(codecs.BOM_UTF8) if self.codec == "utf-8" else first
        try:
            text = raw.decode(self.codec)
        except UnicodeDecodeError as exc:
            return (
                f"line 1 (the header) is not {self.codec} text (byte 0x{raw[exc.start]:02X}"
                f"); is this a CSV file? If it is, pass --encoding"
            )
        if "\x00" in text:
            return "line 1 holds NUL bytes; this does not look like a CSV file"
        try:
            names = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration):
            return "line 1 (the header) is not valid CSV"
        header = [n.strip().lower() for n in names]
        spec = self.spec
        unknown = [n for n in header if n not in spec.loadable]
        missing = [n for n in spec.required if n not in header]
        dupes = sorted({n for n in header if header.count(n) > 1})
        problems = []
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if dupes:
            problems.append(f"repeated column(s) {', '.join(dupes)}")
        if problems:
            return (
                f"line 1 (the header) does not match {spec.name}: {'; '.join(problems)} "
                f"(expected: {', '.join(spec.loadable)})"
            )
        self.header = header
        self.key_index = [header.index(k) for k in spec.primary_key]
        self.validators = validators_for(spec, header)
        return None

    # -- transaction body ------------------------------------------------------------------
    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        if self.pg_encoding != "UTF8":
            conn.execute("SELECT set_config('client_encoding', %s, true)", (self.pg_encoding,))
        target = qualified(self.spec.name)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.header)
        pk = sql.SQL(", ").join(sql.Identifier(c) for c in self.spec.primary_key)
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
                sql.Identifier(_STAGE), sql.Identifier(_SEEN)
            )
        )
        # The staging table checks what the target checks (types, NOT NULL, CHECKs), so a row
        # the target would refuse is refused while staging, where it can be pinned to a line.
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING IDENTITY INCLUDING GENERATED) ON COMMIT DROP"
            ).format(sql.Identifier(_STAGE), target)
        )
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD COLUMN _line integer, "
                "ADD COLUMN _ord bigint GENERATED ALWAYS AS IDENTITY"
            ).format(sql.Identifier(_STAGE))
        )
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, NULL::integer AS _line FROM {} "
                "WITH NO DATA"
            ).format(sql.Identifier(_SEEN), pk, target)
        )
        conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(sql.Identifier(_SEEN), pk))
        force_null = cols
        self.copy_direct = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, FORCE_NULL ({}))").format(
            target, cols, force_null
        )
        self.copy_stage_raw = sql.SQL(
            "COPY {} ({}) FROM STDIN (FORMAT csv, FORCE_NULL ({}))"
        ).format(sql.Identifier(_STAGE), cols, force_null)
        self.copy_stage_lines = sql.SQL(
            "COPY {} ({}, _line) FROM STDIN (FORMAT csv, FORCE_NULL ({}))"
        ).format(sql.Identifier(_STAGE), cols, force_null)

    def _stream(self, conn: psycopg.Connection[Any], fh: Any, hasher: Any) -> None:
        """Stream the file into COPY in large pieces (few savepoints, COPY speed).

        Blocks of whole records are read, hashed and screened on a thread. Consecutive clean
        blocks form a piece, one COPY in one savepoint, up to a size that doubles after each
        clean piece. A refused piece is rolled back and re-read from disk in chunks, each
        loaded on its own (the refused record found and judged on the slow path), and the
        piece size starts small again. A block the screen flags goes to the slow path.
        """
        reader = BatchReader(
            fh,
            first_line=2,
            offset=self.body_offset,
            target_rows=10**9,
            max_batch_bytes=_BLOCK_BYTES,
            on_read=hasher.update,
        )
        screen = (
            _suspect_array
            if self.spec.fmt
            and any(shape == "array_of_strings" for shape in self.spec.fmt.shapes.values())
            else None
        )
        blocks = _Peekable(prefetch(_screened(reader, screen)))
        first = blocks.peek()
        row_bytes = len(first.data) / max(first.lines, 1) if first else 256.0
        # The setting is in rows: the first piece, and the chunks after a refusal, hold that
        # many rows (bounded in bytes so memory stays flat).
        self.chunk_bytes = int(
            min(max(self.settings.load_batch_rows * row_bytes, 64 * 1024), _CHUNK_BYTES)
        )
        limit = self.chunk_bytes
        while (block := blocks.next()) is not None:
            data = self._block_data(block, blocks)
            if not data:
                self._tick(len(block.data), 0)
                continue
            if block.suspect:
                self._tick(len(block.data), self._slow(conn, block, data))
                continue
            if self.upsert_mode:
                # Upsert in chunks: gather clean blocks in memory up to the chunk size.
                parts, size, first_line = [data], len(block.data), block.first_line
                while size < self.chunk_bytes:
                    nxt = blocks.peek()
                    if nxt is None or nxt.suspect:
                        break
                    blocks.next()
                    parts.append(self._block_data(nxt, blocks))
                    size += len(nxt.data)
                rows, _ = self._piece(conn, b"".join(parts), first_line, suspect=False)
                self._tick(size, rows)
                continue
            start, end, first_line = block.offset, block.end_offset, block.first_line
            try:
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy(self.copy_direct) as copy:
                        copy.write(data)
                        self._tick(len(block.data), 0)
                        while end - start < limit:
                            nxt = blocks.peek()
                            if nxt is None or nxt.suspect:
                                break
                            blocks.next()
                            copy.write(self._block_data(nxt, blocks))
                            self._tick(len(nxt.data), 0)
                            end = nxt.end_offset
                    copied = max(cur.rowcount, 0)
                self._remember_piece(conn, data)
                self.result.inserted += copied
                self.result.rows_read += copied
                self._tick(0, copied)
                limit = min(limit * 2, _MAX_PIECE_BYTES)
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError):
                    raise
                bad = None
                if isinstance(exc, pg_errors.UniqueViolation):
                    self.upsert_mode = True  # keys exist already: upsert from now on
                else:
                    bad = _copy_record(exc)
                self._tick(0, self._reload_region(conn, start, end, first_line, bad))
                # Bad rows come in clusters: restart with small pieces, growing again.
                limit = max(self.chunk_bytes // 8, 64 * 1024)

    def _block_data(self, block: Batch, blocks: _Peekable[Batch]) -> bytes:
        """The block's bytes; the file's last block loses its trailing blank lines."""
        if blocks.peek() is None:
            return _strip_trailing_blank_lines(block.data)
        return block.data

    def _reload_region(
        self,
        conn: psycopg.Connection[Any],
        start: int,
        end: int,
        first_line: int,
        bad_record: int | None,
    ) -> int:
        """Load a refused piece again from disk, chunk by chunk; the record the server named
        (``bad_record``, counted from ``start``) is judged without trying its chunk first."""
        rows = 0
        with self.path.open("rb") as fh:
            fh.seek(start)
            chunks = BatchReader(
                _Limited(fh, end - start),
                first_line=first_line,
                offset=start,
                target_rows=self.settings.load_batch_rows,
                max_batch_bytes=self.chunk_bytes,
            )
            for chunk in chunks:
                data = chunk.data
                if chunk.end_offset >= end:
                    data = _strip_trailing_blank_lines(data)
                if data:
                    copied, bad_record = self._piece(
                        conn, data, chunk.first_line, suspect=False, known_bad=bad_record
                    )
                    rows += copied
        return rows

    def _piece(
        self,
        conn: psycopg.Connection[Any],
        data: bytes,
        first_line: int,
        *,
        suspect: bool,
        known_bad: int | None = None,
    ) -> tuple[int, int | None]:
        """Load whole records held in memory: COPY them; when the server refuses one, load
        the records before it again, judge that one record on the slow path and carry on after
        it. ``known_bad`` is a record already known to be refused (1-based, counted from the
        start of ``data``). A piece that keeps failing (a very dirty file) is handed to the
        slow path whole. Returns rows read and what is left of ``known_bad`` past ``data``."""
        rows = 0
        splits = 0
        while data:
            piece = Batch(data=data, first_line=first_line, offset=0, lines=data.count(b"\n"))
            risky = data.startswith(b"\\.\n") or b"\n\\.\n" in data or b"\n\\.\r\n" in data
            if risky or suspect or splits >= _MAX_SPLITS:
                return rows + self._slow(conn, piece, data), None
            span = _record_span(data, known_bad) if known_bad else None
            if span is None:
                try:
                    if self.upsert_mode:
                        copied = self._stage_raw_and_upsert(conn, piece, data)
                    else:
                        copied = self._copy_direct(conn, data)
                        self._remember_piece(conn, data)
                        self.result.inserted += copied
                        self.result.rows_read += copied
                    left = known_bad - copied if known_bad and known_bad > copied else None
                    return rows + copied, left
                except _Fallback as fallback:
                    if fallback.duplicate_key and not self.upsert_mode:
                        self.upsert_mode = True  # keys exist already: upsert from now on
                        continue
                    span = _record_span(data, fallback.record) if fallback.record else None
                    if span is None or piece.lines < 64:
                        return rows + self._slow(conn, piece, data), None
            known_bad = None
            splits += 1
            start, end = span
            head, bad = data[:start], data[start:end]
            if head:
                rows += self._piece(conn, head, first_line, suspect=False)[0]
            bad_line = first_line + head.count(b"\n")
            rows += self._slow(conn, Batch(bad, bad_line, 0, bad.count(b"\n")), bad)
            data = data[end:]
            first_line = bad_line + bad.count(b"\n")
        return rows, None

    def _tick(self, nbytes: int, rows: int) -> None:
        if self.progress:
            self.progress(nbytes, rows)

    # -- fast paths ------------------------------------------------------------------------
    def _copy_direct(self, conn: psycopg.Connection[Any], data: bytes) -> int:
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(self.copy_direct) as copy:
                    copy.write(data)
                return max(cur.rowcount, 0)
        except pg_errors.UniqueViolation:
            raise _Fallback(duplicate_key=True) from None
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            raise _Fallback(record=_copy_record(exc)) from None

    def _remember_piece(self, conn: psycopg.Connection[Any], data: bytes) -> None:
        """Note the transaction id the piece's rows carry (their xmin), so a later row with one
        of their keys is known to repeat a row of this very file. One lookup per piece."""
        span = _record_span(data, 1)
        if span is None:
            return
        first = next(iter(parse_records(data[: span[1]], 1, self.codec, len(self.header))), None)
        if first is None or first.fields is None or len(first.fields) != len(self.header):
            return
        where = sql.SQL(" AND ").join(
            sql.SQL("{} = %s").format(sql.Identifier(c)) for c in self.spec.primary_key
        )
        row = conn.execute(
            sql.SQL("SELECT xmin::text FROM {} WHERE {}").format(qualified(self.spec.name), where),
            [first.fields[i] for i in self.key_index],
        ).fetchone()
        if row is not None:
            self.piece_xids.append(str(row[0]))

    def _stage_raw_and_upsert(
        self, conn: psycopg.Connection[Any], batch: Batch, data: bytes
    ) -> int:
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.Identifier(_STAGE)))
                with cur.copy(self.copy_stage_raw) as copy:
                    copy.write(data)
                staged = max(cur.rowcount, 0)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            raise _Fallback(record=_copy_record(exc)) from None
        raw_by_line: dict[int, bytes] = {}
        if self._find_duplicates(conn):
            # Line numbers are needed to name the duplicates: parse this batch (rare).
            records = [
                r
                for r in parse_records(data, batch.first_line, self.codec, len(self.header))
                if not r.blank
            ]
            if len(records) != staged:
                raise _Fallback()
            conn.execute(
                sql.SQL(
                    "UPDATE {} s SET _line = v.line FROM unnest(%s::bigint[], %s::int[]) "
                    "AS v(ord, line) WHERE s._ord = v.ord"
                ).format(sql.Identifier(_STAGE)),
                (list(range(1, staged + 1)), [r.line for r in records]),
            )
            raw_by_line = {r.line: r.raw for r in records}
        if not self._upsert(conn, raw_by_line):
            raise _Fallback()
        self.result.rows_read += staged
        return staged

    # -- slow path -------------------------------------------------------------------------
    def _slow(self, conn: psycopg.Connection[Any], batch: Batch, data: bytes) -> int:
        self.result.slow_batches += 1
        good: list[Record] = []
        count = 0
        for record in parse_records(data, batch.first_line, self.codec, len(self.header)):
            if record.blank:
                if record.raw.strip():
                    continue
                self._reject(Reject(record.line, "", "empty line", record.raw))
                count += 1
                continue
            count += 1
            problem = check_record(record, self.header, self.spec, self.validators, self.codec)
            if problem:
                self._reject(problem)
            else:
                good.append(record)
        self.result.rows_read += count
        if not good:
            return count
        staged = self._stage_records(conn, good)
        if staged and not self._upsert(conn, {r.line: r.raw for r in staged}):
            self._upsert_one_by_one(conn, staged)
        return count

    def _stage_records(self, conn: psycopg.Connection[Any], records: list[Record]) -> list[Record]:
        """Stage records with their line numbers; bisect to reject what the server refuses."""
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.Identifier(_STAGE)))
        accepted: list[Record] = []
        work = [records]
        while work:
            chunk = work.pop()
            try:
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(self.copy_stage_lines) as copy,
                ):
                    copy.write(self._encode(chunk))
                accepted.extend(chunk)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                if len(chunk) == 1:
                    column, reason = _server_reason(exc)
                    self._reject(Reject(chunk[0].line, column, reason, chunk[0].raw))
                else:
                    mid = len(chunk) // 2
                    work.extend([chunk[mid:], chunk[:mid]])
        return accepted

    def _encode(self, records: list[Record]) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for record in records:
            writer.writerow([*(record.fields or []), record.line])
        return buf.getvalue().encode(self.codec, errors="surrogateescape")

    # -- upsert and duplicates -------------------------------------------------------------
    def _find_duplicates(self, conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
        """Staged rows whose key came earlier in this file: in this batch, in an earlier
        upsert batch (the seen-keys table) or in a direct batch (a row this transaction wrote).
        Returns (ord, line, key values, line of the first occurrence or None)."""
        stage, seen = sql.Identifier(_STAGE), sql.Identifier(_SEEN)
        target = qualified(self.spec.name)
        pk = [sql.Identifier(c) for c in self.spec.primary_key]
        cols_s = sql.SQL(", ").join(sql.SQL("s.{}").format(c) for c in pk)
        join_k = sql.SQL(" AND ").join(sql.SQL("k.{c} = r.{c}").format(c=c) for c in pk)
        join_t = sql.SQL(" AND ").join(sql.SQL("t.{c} = r.{c}").format(c=c) for c in pk)
        key_text = sql.SQL(", ").join(sql.SQL("r.{}::text").format(c) for c in pk)
        return conn.execute(
            sql.SQL(
                """
            WITH ranked AS (
                SELECT s._ord, s._line, {cols_s},
                       row_number() OVER w AS n, first_value(s._line) OVER w AS first
                FROM {stage} s
                WINDOW w AS (PARTITION BY {cols_s} ORDER BY s._ord)
            )
            SELECT r._ord, r._line, ARRAY[{key_text}],
                   CASE WHEN r.n > 1 THEN r.first ELSE k._line END
            FROM ranked r
            LEFT JOIN {seen} k ON {join_k}
            WHERE r.n > 1 OR k.{pk0} IS NOT NULL OR EXISTS (
                SELECT 1 FROM {target} t WHERE {join_t} AND t.xmin = ANY(%s::xid[]))
            ORDER BY r._ord
            """
            ).format(
                stage=stage,
                seen=seen,
                target=target,
                cols_s=cols_s,
                key_text=key_text,
                join_k=join_k,
                join_t=join_t,
                pk0=pk[0],
            ),
            (self.piece_xids,),
        ).fetchall()

    def _upsert(self, conn: psycopg.Connection[Any], raw_by_line: dict[int, bytes]) -> bool:
        """Upsert the staged rows, rejecting keys already seen in this file (first one wins).

        False (nothing written) when the server refuses the statement, e.g. a foreign key.
        """
        stage, seen = sql.Identifier(_STAGE), sql.Identifier(_SEEN)
        dupes = self._find_duplicates(conn)
        try:
            with conn.transaction():
                if dupes:
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE _ord = ANY(%s)").format(stage),
                        ([int(d[0]) for d in dupes],),
                    )
                inserted, updated, staged = self._upsert_statement(conn, None)
                pk_cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.spec.primary_key)
                conn.execute(
                    sql.SQL("INSERT INTO {} SELECT {}, _line FROM {}").format(seen, pk_cols, stage)
                )
        except psycopg.OperationalError:
            raise
        except psycopg.Error:
            return False
        for _ord, line, key, first in dupes:
            line_no = int(line) if line is not None else 0
            self.dup_keys.setdefault(_key_text(list(key)), []).append(
                Reject(
                    line_no,
                    ", ".join(self.spec.primary_key),
                    "duplicate key "
                    + "/".join(key)
                    + " in this file (first at line "
                    + (str(first) if first is not None else "{first}")
                    + ")",
                    raw_by_line.get(line_no, b""),
                )
            )
        self.result.inserted += inserted
        self.result.updated += updated
        self.result.unchanged += staged - inserted - updated
        return True

    def _upsert_statement(
        self, conn: psycopg.Connection[Any], ord_: int | None
    ) -> tuple[int, int, int]:
        """INSERT ... ON CONFLICT DO UPDATE for the stage (or one staged row)."""
        stage = sql.Identifier(_STAGE)
        target = qualified(self.spec.name)
        pk_cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.spec.primary_key)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.header)
        noncols = [c for c in self.header if c not in self.spec.primary_key]
        if noncols:
            assignments = sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in noncols
            )
            left = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in noncols)
            right = sql.SQL(", ").join(
                sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in noncols
            )
            conflict: sql.Composable = sql.SQL(
                "DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})"
            ).format(assignments, left, right)
        else:
            conflict = sql.SQL("DO NOTHING")
        where = sql.SQL("WHERE _ord = {}").format(sql.Literal(ord_)) if ord_ else sql.SQL("")
        row = conn.execute(
            sql.SQL(
                """
            WITH up AS (
                INSERT INTO {target} AS t ({cols})
                SELECT {cols} FROM {stage} {where} ORDER BY _ord
                ON CONFLICT ({pk}) {conflict}
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                   (SELECT count(*) FROM {stage} {where})
            FROM up
            """
            ).format(
                target=target, cols=cols, stage=stage, pk=pk_cols, conflict=conflict, where=where
            )
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def _upsert_one_by_one(self, conn: psycopg.Connection[Any], records: list[Record]) -> None:
        """The batch upsert failed (a foreign key, say): find the rows the server refuses."""
        by_line = {r.line: r for r in records}
        dupes = {int(d[0]) for d in self._find_duplicates(conn)}
        rows = conn.execute(
            sql.SQL("SELECT _ord, _line FROM {} ORDER BY _ord").format(sql.Identifier(_STAGE))
        ).fetchall()
        keep: list[int] = []
        for ord_, line in rows:
            if int(ord_) in dupes:
                keep.append(int(ord_))
                continue
            try:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("SELECT 1 FROM {} WHERE _ord = %s").format(sql.Identifier(_STAGE)),
                        (ord_,),
                    )
                    self._upsert_statement(conn, int(ord_))
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                column, reason = _server_reason(exc)
                record = by_line.get(int(line))
                self._reject(Reject(int(line), column, reason, record.raw if record else b""))
                continue
            keep.append(int(ord_))
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE NOT (_ord = ANY(%s))").format(sql.Identifier(_STAGE)),
            (keep,),
        )
        # What is left was either written above or is a duplicate: let _upsert count and
        # reject it (already written rows now compare as unchanged).
        self._upsert(conn, {r.line: r.raw for r in records})

    def _resolve_duplicates(self) -> None:
        """Reject the later rows of duplicated keys, naming the line of the first one."""
        if any("{first}" in r.reason for rs in self.dup_keys.values() for r in rs):
            firsts = self._first_lines(
                {k for k, rs in self.dup_keys.items() if any("{first}" in r.reason for r in rs)}
            )
            for key, rejects in self.dup_keys.items():
                for reject in rejects:
                    reject.reason = reject.reason.replace("{first}", str(firsts.get(key, "?")))
        for rejects in self.dup_keys.values():
            for reject in rejects:
                self.rejects.add(reject)

    def _first_lines(self, keys: set[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
        """Scan the file once for the first line of each key (only when duplicates exist)."""
        found: dict[tuple[str, ...], int] = {}
        with self.path.open("rb") as fh:
            fh.seek(self.body_offset)
            for batch in BatchReader(fh, first_line=2, offset=self.body_offset, target_rows=50_000):
                for record in parse_records(
                    batch.data, batch.first_line, self.codec, len(self.header)
                ):
                    if record.fields is None or len(record.fields) != len(self.header):
                        continue
                    key = _key_text([record.fields[i] for i in self.key_index])
                    if key in keys and key not in found:
                        found[key] = record.line
                if len(found) == len(keys):
                    break
        return found

    def _reject(self, reject: Reject) -> None:
        self.rejects.add(reject)


class _Fallback(Exception):
    """The server refused a piece; ``record`` is the 1-based record it named, if any."""

    def __init__(self, *, duplicate_key: bool = False, record: int | None = None) -> None:
        super().__init__()
        self.duplicate_key = duplicate_key
        self.record = record


_COPY_LINE = re.compile(r"COPY [^,]+, line (\d+)")


def _copy_record(exc: psycopg.Error) -> int | None:
    """The record number PostgreSQL's COPY error context names (it counts records)."""
    match = _COPY_LINE.search(exc.diag.context or "")
    return int(match.group(1)) if match else None


def _record_span(data: bytes, record: int) -> tuple[int, int] | None:
    """Byte span of the ``record``-th CSV record of ``data`` (newlines inside quotes skipped)."""
    pos, start, current, quotes = 0, 0, 1, 0
    size = len(data)
    while pos < size:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        quotes += data.count(b'"', pos, end)
        pos = end
        if quotes % 2 == 0:
            if current == record:
                return start, end
            current += 1
            start = end
    return None


#: A JSON array cell whose element is not a string: "[5", "[true", "[{" at the start of a cell,
#: or a non-string after the comma that follows a string element (""a"", 5). Both patterns
#: start with a literal, so the scan runs at memchr speed; the context of the rare match is
#: checked in Python. The server checks the rest (types, array-ness); a batch that matches is
#: validated row by row on the slow path.
_ARRAY_START = re.compile(rb'\[\s*[^"\]\s]')
_AFTER_STRING = re.compile(rb'""\s*,\s*[-0-9tfn{\[]')


def _suspect_array(data: bytes) -> bool:
    for match in _ARRAY_START.finditer(data):
        at = match.start()
        if at == 0 or data[at - 1 : at] in (b'"', b",", b"\n"):
            return True
    for match in _AFTER_STRING.finditer(data):
        at = match.start()
        if at == 0 or data[at - 1 : at] != b'"':
            return True
    return False


def _screened(batches: Iterable[Batch], screen: Callable[[bytes], bool] | None) -> Iterator[Batch]:
    for batch in batches:
        data = batch.data
        # "\." alone on a line ends COPY data early: such a block takes the slow path.
        risky = data.startswith(b"\\.\n") or b"\n\\.\n" in data or b"\n\\.\r\n" in data
        if risky or (screen is not None and screen(data)):
            batch.suspect = True
        yield batch


class _Peekable(Generic[T]):
    """An iterator with one item of look-ahead."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._next: T | None = None
        self._done = False
        self._advance()

    def _advance(self) -> None:
        try:
            self._next = next(self._items)
        except StopIteration:
            self._next = None
            self._done = True

    def peek(self) -> T | None:
        return self._next

    def next(self) -> T | None:
        item = self._next
        if not self._done:
            self._advance()
        return item


class _Limited(io.RawIOBase):
    """At most ``size`` bytes of a binary file, from its current position."""

    def __init__(self, fh: Any, size: int) -> None:
        self._fh = fh
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data: bytes = self._fh.read(n)
        self._left -= len(data)
        return data


def _strip_trailing_blank_lines(data: bytes) -> bytes:
    """Drop blank lines at the end of the file, keeping the last record's line ending."""
    stripped = data.rstrip(b"\r\n")
    if not stripped:
        return b""
    tail = data[len(stripped) :]
    for ending in (b"\r\n", b"\n", b"\r"):
        if tail.startswith(ending):
            return stripped + ending
    return stripped


def _key_text(values: list[str]) -> tuple[str, ...]:
    """A key as comparable text (UUIDs in canonical form)."""
    import uuid

    out = []
    for value in values:
        try:
            out.append(str(uuid.UUID(value)))
        except ValueError:
            out.append(value)
    return tuple(out)


def _server_reason(exc: psycopg.Error) -> tuple[str, str]:
    """(column, reason) from a server error on a single staged row."""
    diag = exc.diag
    column = diag.column_name or ""
    context = diag.context or ""
    if not column and ", column " in context:
        column = context.split(", column ", 1)[1].split(":", 1)[0].strip()
    message = (diag.message_primary or str(exc).splitlines()[0]).rstrip(".")
    if diag.constraint_name and "check constraint" in message:
        message = f"violates {diag.constraint_name}"
    return column, message
