"""The deploy-ledger group: every SQL file is deployed and unchanged since."""

from __future__ import annotations

from typing import Any

import psycopg

from syncpipe.db.ledger import applied_files
from syncpipe.services.verify.result import VerifyResult
from syncpipe.sqlfiles import SqlFile


def check_files(conn: psycopg.Connection[Any], files: list[SqlFile], result: VerifyResult) -> None:
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
