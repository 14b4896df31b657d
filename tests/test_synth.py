"""The generator's data keeps its shape as it grows (bench/growth.py compares sizes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncpipe.synth import AREA_CODES, Config, Generator


def test_every_team_has_an_office_line_of_its_own_at_any_size() -> None:
    generator = Generator(Config(persons=3_000_000, seed=1))
    teams = 250_000  # 3.25M persons in teams of 13
    lines = [generator._office(team) for team in range(1, teams + 1)]
    assert len(set(lines)) == teams
    assert all(len(line) == 10 and line.isdigit() for line in lines)
    # Up to the size where the first pattern repeats, the lines are what they always were
    # (so the data of the sizes measured before is unchanged).
    for team in (1, 2, 99_999, 100_000):
        area = AREA_CODES[(team * 31) % len(AREA_CODES)]
        expected = (
            f"{area}555{(team * 37) % 10000:04d}"
            if team % 2
            else f"{area}{200 + team % 700:03d}0100"
        )
        assert lines[team - 1] == expected


@pytest.mark.parametrize("module", ["syncpipe.synth", "syncpipe.synth_noisy"])
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--persons", "-5"], "argument --persons: -5 is less than 1"),
        (["--persons", "many"], "argument --persons: 'many' is not a whole number"),
        (["--out", "/etc/passwd/x"], "cannot write into /etc/passwd/x: Not a directory"),
    ],
)
def test_bad_arguments_are_usage_errors(
    module: str, args: list[str], said: str, tmp_path: Path
) -> None:
    """A negative size was accepted (and wrote empty files); a folder that cannot be written
    was a traceback."""
    out = ["--out", str(tmp_path / "out")] if "--out" not in args else []
    done = subprocess.run(
        [sys.executable, "-m", module, *out, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr
