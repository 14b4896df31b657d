"""bench/growth.py's arithmetic: the growth exponents it prints and the phases it marks."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import growth


@pytest.mark.parametrize("k", [0.8, 1.0, 1.3, 2.0])
def test_exponent_of_a_power_law(k: float) -> None:
    points = [(n, 3.0 * n**k) for n in (150_000, 1_500_000, 4_500_000)]
    assert growth.exponent(*points[0], *points[1]) == pytest.approx(k)
    assert growth.fitted(points) == pytest.approx(k)


def test_n_log_n_is_a_little_above_linear() -> None:
    k = growth.n_log_n(150_000, 1_500_000)
    assert 1.0 < k < 1.1
    n1, n2 = 150_000, 1_500_000
    assert n2 * math.log(n2) == pytest.approx(n1 * math.log(n1) * (n2 / n1) ** k)


def test_report_marks_a_phase_that_grows_faster_than_n_log_n(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = [
        {
            "persons": persons,
            "records": records,
            "seconds": records / 10_000,
            "peak_pss": 200e6 + records * 400,
            "temp_bytes": 0,
            # linear, quadratic, and too short at the smallest size to say anything
            "phases": {
                "agents": records / 20_000,
                "review": (records / 100_000) ** 2,
                "commit": 0.1,
            },
        }
        for persons, records in ((100_000, 150_000), (1_000_000, 1_500_000))
    ]
    growth.report(runs)
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    # the step between the sizes, then the fitted exponent; "*": above n log n
    assert lines["agents"].split()[1:] == ["1.00", "1.00"]
    assert lines["review"].split()[1:] == ["2.00*", "2.00*"]
    assert "commit" not in lines
    assert "100.0" in out  # us per record: 15 s for 150,000 records


def test_sizes_are_checked() -> None:
    assert growth.sizes_list("1_000_000,100000,100000") == [100_000, 1_000_000]
    for bad in ("10,abc", "", "50"):
        with pytest.raises(argparse.ArgumentTypeError):
            growth.sizes_list(bad)
