"""Reject files: every row of a file that was not loaded, with its line, column, value (cut),
reason and original text, written under the logs folder (``SYNCPIPE_LOGS_DIR``/rejects).

The rows come from the ledger (``syncpipe.load_rejects``), where each batch commits its own, so
the file is written whole once the load ends, and written again when a rerun reports the same
rejects: it always describes committed work, and no temporary file is left behind by a kill.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from syncpipe.core.errors import ConfigError

#: what a table's name may not bring into a file name
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
HEADER = ("file", "line", "column", "value", "reason", "raw")


def reject_folder(logs_dir: Path) -> Path:
    """Where reject files go."""
    return logs_dir / "rejects"


def reject_path(
    logs_dir: Path, source: Path, sha256: str, table: str, *, dry_run: bool = False
) -> Path:
    """The reject file of a source file's content loaded into ``table`` (the same content and
    table, the same file; one file loaded into two tables has two): ``<name>.<table>.<the
    content's SHA-256, cut>.rejects.csv``, the table without its schema when that is public,
    and where it has characters a file name should not (quotes, spaces, other scripts), those
    replaced and a digest of the name added."""
    suffix = ".dry-run" if dry_run else ""
    name = table.removeprefix("public.")
    where = _UNSAFE.sub("_", name)
    if where != name:  # (two names made the same by it stay two: "a b", "a,b")
        where += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return reject_folder(logs_dir) / f"{source.stem}.{where}.{sha256[:12]}{suffix}.rejects.csv"


def write_rejects(path: Path, source: Path, rows: Iterable[tuple[int, str, str, str, str]]) -> Path:
    """Write (line, column, value, reason, raw) rows as the reject file of ``source``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            for line, column, value, reason, raw in rows:
                writer.writerow((str(source), line, column, value, reason, raw))
    except OSError as exc:  # (the logs folder is a file, unwritable, or its disk full)
        raise ConfigError(
            f"Cannot write the reject file {path} of {source.name} (setting "
            f"SYNCPIPE_LOGS_DIR): {exc.strerror or exc}; its rows are loaded, the rejects "
            "listed again by the next load."
        ) from None
    return path


def reason_key(reason: str, column: str = "") -> str:
    """Group reasons for the summary: the text before the first detail (a repeated key's
    reason without the key, so they group as one), after the column it is about ("team_id is
    501 characters long"; a duplicate key's stays without its columns)."""
    if reason.startswith("duplicate key "):
        words = reason.split(" (")[0].split()
        return " ".join(["duplicate key", *words[3:]])
    for sep in (" (", ":", ";"):
        reason = reason.split(sep)[0]
    words = reason.split()
    if words and words[0].startswith("'"):
        reason = " ".join(words[1:]) or reason
    return f"{column} {reason}" if column else reason
