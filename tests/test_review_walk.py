"""`syncpipe review walk` on a real terminal (a pseudo-terminal): prompt, progress, both agents
side by side, and a confirmation after each decision."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.agents import Sources
from tests.helpers import Invoke, one


def _read_until(fd: int, pattern: str, timeout: float = 60.0) -> str:
    """Read the terminal until ``pattern`` (a regex) appears; return all that was read."""
    text = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:
                break
            if not chunk:
                break
            text += chunk
            if re.search(pattern, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)):
                break
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@contextmanager
def _walk(dsn: str, cwd: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`syncpipe review walk --by tester` on a pseudo-terminal: the process and the terminal's
    side to read and type on; the process is killed and the terminal closed afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCPIPE_")}
    env.update({"SYNCPIPE_DATABASE_URL": dsn, "COLUMNS": "160", "TERM": "xterm", "NO_COLOR": "1"})
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "review", "walk", "--by", "tester"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    try:
        yield proc, leader
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)


def test_walk_on_a_terminal(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    """Two open items: the first accepted, the second rejected, each confirmed."""
    src = Sources()
    # (a typo apart, one team, nothing that conflicts: doubtful, so queued)
    src.agent("Olaf Brandt", team="team-5", emails=["olaf1@x.com"], phones=["5550003333"])
    src.agent("Olaf Brand", team="team-5")  # (contacts that differ would make them namesakes)
    src.agent("Marta Kowalski", team="team-6", emails=["marta1@x.com"])
    src.agent("Marta Kowalsky", team="team-6")
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    assert one(deployed_db, "SELECT count(*) FROM merge_review_queue WHERE status = 'open'") == 2

    with _walk(deployed_db, tmp_path) as (proc, leader):
        first = _read_until(leader, r"\(s\):")
        assert "[a]ccept, [r]eject, [s]kip, [q]uit [a/r/s/q] (s):" in first
        assert "1 of 2" in first
        assert "olaf1@x.com" in first and "+15550003333" in first and "Olaf Brand " in first
        assert "use --limit" not in first
        os.write(leader, b"a\n")
        second = _read_until(leader, r"\(s\):")
        assert re.search(r"Review item \d+ accepted: agents \d+ and \d+ are now agent \d+", second)
        assert "2 of 2" in second and "marta1@x.com" in second
        os.write(leader, b"r\n")
        rest = _read_until(leader, r"decision\(s\) recorded")
        assert re.search(r"Review item \d+ rejected", rest)
        assert "2 decision(s) recorded; 0 item(s) skipped." in rest
        assert proc.wait(timeout=60) == 0
    assert one(deployed_db, "SELECT count(*) FROM merge_review_queue WHERE status = 'open'") == 0


def test_walk_shows_a_changed_item_again(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    """An item whose agent gained a record since it was queued: the first answer is not taken,
    the walk says what changed and shows the item again; the second answer is taken."""
    src = Sources()
    src.agent("Christopher Johnson", emails=["cj@mail.com"])
    src.page("team-1", [{"name": "Chris Johnsno", "email": "chris.j@work.com"}])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    more = Sources(_serial=100)
    more.agent("Christopher Johnson", emails=["cj@mail.com"], phones=["(617) 555-0101"])
    more.write(tmp_path / "d2")
    invoke(["load", str(tmp_path / "d2")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    assert one(deployed_db, "SELECT count(*) FROM merge_review_queue WHERE status = 'open'") == 1

    with _walk(deployed_db, tmp_path) as (proc, leader):
        first = _read_until(leader, r"\(s\):")
        assert "1 of 1" in first
        os.write(leader, b"a\n")
        again = _read_until(leader, r"\(s\):")
        assert "changed since it was queued" in again and "record(s) matched to it since" in again
        assert "1 of 1" in again and "+16175550101" in again
        os.write(leader, b"a\n")
        rest = _read_until(leader, r"decision\(s\) recorded")
        assert re.search(r"Review item \d+ accepted", rest)
        assert "1 decision(s) recorded; 0 item(s) skipped." in rest
        assert proc.wait(timeout=60) == 0
    assert one(deployed_db, "SELECT count(*) FROM merge_review_queue WHERE status = 'open'") == 0
