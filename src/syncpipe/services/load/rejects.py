"""Reject files: every row that was not loaded, with its line, column, reason and original text.

Rows are streamed to a temporary file next to the final one and the file is renamed when the
load commits, so a reject file always describes a load that happened.
"""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from syncpipe.services.load.records import Reject

HEADER = ("file", "line", "column", "reason", "raw")


class RejectWriter:
    """Collects rejects for one source file."""

    def __init__(self, folder: Path, source: Path, *, dry_run: bool = False) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        suffix = ".dry-run" if dry_run else ""
        self.source = source
        self.path = folder / f"{source.stem}.{stamp}{suffix}.rejects.csv"
        self._tmp = folder / f".{self.path.name}.partial"
        self._folder = folder
        self._fh: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self.count = 0
        self.by_reason: dict[str, int] = {}

    def add(self, reject: Reject) -> None:
        """Append one reject."""
        if self._writer is None:
            self._folder.mkdir(parents=True, exist_ok=True)
            self._fh = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = csv.DictWriter(self._fh, fieldnames=HEADER)
            self._writer.writeheader()
        raw = reject.raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
        self._writer.writerow(
            {
                "file": str(self.source),
                "line": reject.line,
                "column": reject.column,
                "reason": reject.reason,
                "raw": raw.replace("\x00", "\\x00"),
            }
        )
        self.count += 1
        key = _reason_key(reject.reason)
        self.by_reason[key] = self.by_reason.get(key, 0) + 1

    def commit(self) -> Path | None:
        """Publish the reject file (None when nothing was rejected)."""
        if self._fh is None:
            return None
        self._fh.close()
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Forget everything (the load was rolled back)."""
        if self._fh is not None:
            self._fh.close()
            self._tmp.unlink(missing_ok=True)
        self._fh = None
        self._writer = None


def _reason_key(reason: str) -> str:
    """Group reasons for the summary: the text before the first detail."""
    for sep in (" (", ":", ";"):
        reason = reason.split(sep)[0]
    words = reason.split()
    if words and words[0].startswith("'"):
        return " ".join(words[1:]) or reason
    return reason
