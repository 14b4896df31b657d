"""LoadService: CSV files into their tables at COPY speed, resumable, without losing or
duplicating a row. This module is the public face of ``syncpipe.services.load``.

The files of one table load one after the other, in name order (so two files with the same keys
cannot deadlock); files of different tables load at the same time (``--jobs``). A key belongs
to the file that loaded it first: a different file repeating it, in this run or a later one,
has that row rejected naming the other file (a changed version of the same file, a file of
the same name in any folder, updates its own keys). Each file is driven by ``driver.FileLoad``.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from syncpipe.core.errors import ConfigError, InterruptedByUser, NotDeployedError
from syncpipe.db.database import Database
from syncpipe.db.errors import first_line
from syncpipe.db.ledger import ledger_exists, load_ledger_current
from syncpipe.db.queries import name_parts
from syncpipe.logs import get_logger
from syncpipe.services.load.driver import FileLoad, FileResult, LoadOptions, ProgressFn
from syncpipe.services.load.rejects import reject_folder
from syncpipe.services.load.tables import canonical_table, expand_paths
from syncpipe.settings import Settings

log = get_logger(__name__)

__all__ = ["FileResult", "LoadResult", "LoadService", "ProgressFn", "resolve_encoding"]

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


@dataclass
class LoadResult:
    """All files of one ``syncpipe load``."""

    files: list[FileResult] = field(default_factory=list)
    skipped_paths: list[str] = field(default_factory=list)
    dry_run: bool = False
    duration_s: float = 0.0
    reject_folder: str = ""

    @property
    def failed(self) -> bool:
        """True when a file failed or holds rejected rows nobody accepted (exit code 1)."""
        return any(f.failed for f in self.files)

    @property
    def gave_up(self) -> str | None:
        """Why the first file that waited out the lock timeout failed (exit code 3), if one
        did."""
        return next((f.message for f in self.files if f.locked), None)

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
            "reject_folder": self.reject_folder,
            "duration_s": round(self.duration_s, 3),
        }


@contextmanager
def _ledger_denied(db: Database) -> Iterator[None]:
    """A role that may not read the load ledger, named with the remedy (exit 2)."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigError(
            f"The role {db.info.user} may not use syncpipe's load ledger (schema syncpipe) on "
            f"{db.target}: {first_line(exc).rstrip('.')}; run the load as the role that "
            "deployed syncpipe."
        ) from None


def _not_tried(path: Path, table: str, blocked: str) -> FileResult:
    """A file of a table an earlier file of this load waited for in vain."""
    message = (
        f"not tried: {blocked} gave up waiting for {table} before it; run the load again "
        "when the table is free"
    )
    log.warning("load.file_failed", file=str(path), error=message)
    return FileResult(path=str(path), table=table, status="failed", message=message, locked=True)


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


class LoadService:
    """Loads CSV files on the shared pool."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def load(
        self,
        paths: list[Path],
        *,
        table: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        accept_rejects: bool = False,
        encoding: str = "utf-8",
        jobs: int | None = None,
        progress: ProgressFn | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> LoadResult:
        """Load every file (folders expanded); the result says what happened to each."""
        t0 = time.perf_counter()
        codec, pg_encoding = resolve_encoding(encoding)
        if table is not None and len(name_parts(table)) == 1:
            table = f"public.{table}"
        selection = expand_paths(paths, self.settings.csv_sources, table, self.settings.logs_dir)
        if not selection.files and not selection.refused:
            raise ConfigError(
                "No CSV file to load in "
                + ", ".join(str(p) for p in paths)
                + f" (patterns: {', '.join(self.settings.csv_sources)})."
            )
        with self.db.connection() as conn:
            with _ledger_denied(self.db):
                if not ledger_exists(conn):
                    raise NotDeployedError(
                        f"{self.db.target} has not been deployed; run `syncpipe deploy` first."
                    )
                if not load_ledger_current(conn):
                    raise NotDeployedError(
                        f"The load ledger of {self.db.target} was deployed by an older "
                        "syncpipe; run `syncpipe deploy` to bring it up to date."
                    )
            # (each table as the catalog spells it: `-t PUBLIC.NEW_AGENTS` is public.new_agents,
            # whose ledger rows and claims the other loads of it know it by)
            names = {t: canonical_table(conn, t) for t in {t for _, t in selection.files}}
        selection.files = [(path, names[target]) for path, target in selection.files]
        if on_total is not None:
            on_total(sum(p.stat().st_size for p, _ in selection.files))
        result = LoadResult(
            skipped_paths=[str(p) for p in selection.not_matched],
            dry_run=dry_run,
            reject_folder=str(reject_folder(self.settings.logs_dir)),
        )
        for path, target, reason in selection.refused:
            result.files.append(
                FileResult(path=str(path), table=target, status="failed", message=reason)
            )
            log.warning("load.file_refused", file=str(path), error=reason)
        # One group per table, its files in order: never two writers of one table at once.
        groups: dict[str, list[Path]] = {}
        for path, target in selection.files:
            groups.setdefault(target, []).append(path)
        workers = max(1, min(jobs or self.settings.load_jobs, len(groups) or 1))
        streams = max(1, min(self.settings.load_streams, self.settings.pool_max_size // workers))
        options = LoadOptions(
            db=self.db,
            env=self.settings.env,
            logs_dir=self.settings.logs_dir,
            batch_rows=self.settings.load_batch_rows,
            streams=streams,
            force=force,
            dry_run=dry_run,
            accept_rejects=accept_rejects,
            codec=codec,
            pg_encoding=pg_encoding,
            progress=progress,
            lock_timeout=self.settings.lock_timeout,
        )

        def one_table(item: tuple[str, list[Path]]) -> list[FileResult]:
            target, paths = item
            results: list[FileResult] = []
            for path in paths:
                if results and results[-1].locked:  # (each would wait as long again)
                    results.append(_not_tried(path, target, Path(results[-1].path).name))
                else:
                    results.append(FileLoad(options, path, target).run())
            return results

        try:
            if workers == 1:
                loaded = [one_table(item) for item in groups.items()]
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
                    try:
                        loaded = list(pool.map(one_table, groups.items()))
                    except KeyboardInterrupt:
                        options.stop.set()  # the other tables' files stop at their next batch
                        raise
        except KeyboardInterrupt:
            options.stop.set()
            log.warning("load.interrupted", dry_run=dry_run)
            raise InterruptedByUser(
                "Load interrupted (Ctrl-C): "
                + (
                    "nothing was written (a dry run)."
                    if dry_run
                    else "the batches committed so far are kept, and the batch in flight was "
                    "finished or rolled back; run the same load again to resume from them."
                )
            ) from None
        done = {f.path: f for group in loaded for f in group}
        result.files += [done[str(p)] for p, _ in selection.files]
        result.duration_s = time.perf_counter() - t0
        log.info("load.done", files=len(result.files), dry_run=dry_run, **result.totals())
        return result
