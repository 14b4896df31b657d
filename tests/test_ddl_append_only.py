"""The CI check that keeps DDL append-only (.ci/check_ddl_append_only.py), on throwaway repos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / ".ci" / "check_ddl_append_only.py"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(repo)], capture_output=True, text=True, check=False
    )


def commit_file(repo: Path, path: str, text: str, message: str) -> None:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def main_repo(tmp_path: Path) -> Path:
    """A 'main' with two commits, each adding a DDL file."""
    repo = tmp_path / "main"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit_file(repo, "sql/ddl/000_a.sql", "CREATE TABLE a (id int);\n", "a")
    commit_file(repo, "sql/ddl/010_b.sql", "CREATE TABLE b (id int);\n", "b")
    return repo


def test_fresh_clone_of_main_passes_and_catches_an_edit(main_repo: Path, tmp_path: Path) -> None:
    """CI's clone of main compares with the previous commit: a new file passes, an edit fails."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", f"file://{main_repo}", str(clone))
    ok = check(clone)
    assert ok.returncode == 0, ok.stderr
    commit_file(clone, "sql/ddl/000_a.sql", "CREATE TABLE a (id bigint);\n", "edit a")
    bad = check(clone)
    assert bad.returncode == 1
    assert "sql/ddl/000_a.sql was edited" in bad.stderr


def test_branch_is_compared_with_the_merge_base(main_repo: Path, tmp_path: Path) -> None:
    """On a branch every commit since origin/main counts, and working-tree edits too."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", f"file://{main_repo}", str(clone))
    git(clone, "checkout", "-q", "-b", "feature")
    commit_file(clone, "sql/ddl/000_a.sql", "CREATE TABLE a (id bigint);\n", "edit a")
    commit_file(clone, "sql/ddl/020_c.sql", "CREATE TABLE c (id int);\n", "new c")
    bad = check(clone)
    assert bad.returncode == 1 and "000_a.sql" in bad.stderr and "020_c.sql" not in bad.stderr
    git(clone, "revert", "--no-edit", "HEAD~1")
    assert check(clone).returncode == 0
    (clone / "sql/ddl/010_b.sql").unlink()  # uncommitted deletion
    gone = check(clone)
    assert gone.returncode == 1 and "010_b.sql was deleted" in gone.stderr


def test_shallow_clone_has_nothing_to_compare(main_repo: Path, tmp_path: Path) -> None:
    """A depth-1 clone has no earlier commit: the check says so and passes."""
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{main_repo}", str(clone))
    result = check(clone)
    assert result.returncode == 0
    assert "nothing to compare" in result.stdout


def test_this_repository_passes() -> None:
    """The checkout the tests run in has not edited a DDL file (when it is a git checkout)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = check(ROOT)
    assert result.returncode == 0, result.stderr
