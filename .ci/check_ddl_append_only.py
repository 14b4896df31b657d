#!/usr/bin/env python3
"""CI check: DDL is append-only. A file under sql/ddl/ that exists at the base may not change.

The base is the merge base with origin/main on a branch; on main itself (CI's fresh clone) it
is the previous commit. Working-tree edits count too, so the check also works before a commit.
A new DDL file is fine. With no earlier commit in the clone (a shallow clone of depth 1) there
is nothing to compare against, and the check says so and passes.

Usage: python3 .ci/check_ddl_append_only.py [REPO]   (exit 0 ok, 1 a DDL file was edited)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DDL = "sql/ddl"


def git(repo: Path, *args: str) -> str | None:
    """Output of a git command, or None when it fails (missing ref, shallow history)."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def base_commit(repo: Path) -> tuple[str | None, str]:
    """The commit to compare with, and how it was chosen."""
    head = git(repo, "rev-parse", "HEAD")
    if head is None:
        return None, "not a git checkout (or no commit yet)"
    main = git(repo, "rev-parse", "--verify", "--quiet", "origin/main^{commit}")
    if main and main != head:
        merge_base = git(repo, "merge-base", "HEAD", main)
        if merge_base and merge_base != head:
            return merge_base, "the merge base with origin/main"
    previous = git(repo, "rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")
    if previous:
        return previous, "the previous commit"
    return None, "no earlier commit in this clone (shallow or first commit)"


def edited_ddl(repo: Path, base: str) -> list[tuple[str, str]]:
    """(status, path) of DDL files present at ``base`` that are modified or gone now."""
    out = git(repo, "diff", "--name-status", "--no-renames", base, "--", DDL) or ""
    changes = []
    for line in out.splitlines():
        status, _, path = line.partition("\t")
        if status[:1] in {"M", "D", "T"}:
            changes.append((status[:1], path))
    return changes


def main(argv: list[str]) -> int:
    repo = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    base, why = base_commit(repo)
    if base is None:
        print(f"DDL append-only: {why}; nothing to compare.")
        return 0
    changes = edited_ddl(repo, base)
    if not changes:
        print(f"DDL append-only: no file under {DDL}/ changed since {why} ({base[:12]}).")
        return 0
    for status, path in changes:
        verb = "was deleted" if status == "D" else "was edited"
        print(
            f"DDL append-only: {path} {verb} since {why} ({base[:12]}); DDL files run once, "
            "so put the change in a new file under sql/ddl/.",
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
