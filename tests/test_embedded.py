"""The embedded default: no DSN configured, syncpipe runs its own PostgreSQL and stops it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _postgres_running_on(data_dir: Path) -> bool:
    import psutil

    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and any(str(data_dir) in part for part in cmdline):
            return True
    return False


@pytest.mark.slow
def test_embedded_default_end_to_end(tmp_path: Path) -> None:
    """deploy + verify on the embedded server through the real entry point; data is kept and
    no server is left running afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCPIPE_")}
    env.pop("DATABASE_URL", None)
    data_dir = tmp_path / "state" / "pgdata"
    env["SYNCPIPE_EMBEDDED_DATA_DIR"] = str(data_dir)
    cmd = [sys.executable, "-m", "syncpipe"]

    first = subprocess.run(
        [*cmd, "deploy"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert first.returncode == 0, first.stderr
    assert f"embedded PostgreSQL in {data_dir}" in first.stderr
    assert "Verify passed" in first.stdout
    assert (data_dir / "PG_VERSION").exists()
    assert not _postgres_running_on(data_dir)

    second = subprocess.run(
        [*cmd, "deploy"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert second.returncode == 0, second.stderr
    assert "Nothing to deploy" in second.stdout  # the data survived between runs
    assert not _postgres_running_on(data_dir)
