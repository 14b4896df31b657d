"""A report that tells the truth: three outcomes, a small page readable at a million agents,
and the top open review items."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from syncpipe.cli.report_html import render_html
from syncpipe.services.report import Report
from tests.agents import Sources
from tests.helpers import Invoke, fetch, one


def test_single_record_agents_are_their_own_category(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An agent with one source record is never counted as "merged automatically"."""
    src = Sources()
    src.agent("Nora Quist", emails=["nora@mail.com"], phones=["5551230001"])
    src.page("team-1", [{"name": "Nora Quist", "email": "NORA@mail.com"}])
    src.agent("Olaf Brandt", team="team-2", emails=["olaf@b.com"])
    src.page("team-2", [{"name": "Olaf Brand", "phone": "5551230002"}])
    src.agent("Zed Solo", team="team-3", emails=["zed@solo.com"])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    data = invoke(["report", "--format", "json"], dsn=deployed_db).json()
    agents = data["agents"]
    assert agents["single_record"] == 1  # Zed
    assert agents["merged_automatically"] == 1  # Nora, two records
    assert agents["needs_review"] == 2  # Olaf Brandt and Olaf Brand
    assert (
        agents["single_record"] + agents["merged_automatically"] + agents["needs_review"]
        == (agents["live"])
    )
    for bucket in data["confidence_distribution"]:
        assert (
            bucket["single_record"] + bucket["merged_automatically"] + bucket["needs_review"]
            == bucket["agents"]
        )
    assert (
        one(deployed_db, "SELECT count(*) FROM new_unified_agents WHERE source_count = 1") == 3
    )  # Zed and both Olafs: only Zed is a "single record" outcome

    # the top open review items: both agents with names, teams, emails and phones
    (item,) = data["review_items"]
    sides = {item["a"]["full_name"], item["b"]["full_name"]}
    assert sides == {"Olaf Brandt", "Olaf Brand"}
    by_name = {item[k]["full_name"]: item[k] for k in ("a", "b")}
    assert by_name["Olaf Brandt"]["emails"] == ["olaf@b.com"]
    assert by_name["Olaf Brand"]["phones"] == ["+15551230002"]

    # An agent whose only record was deleted from its source counts no record: it was counted
    # as "a single source record".
    fetch(deployed_db, "DELETE FROM new_agents WHERE full_name = 'Zed Solo'")
    invoke(["merge"], dsn=deployed_db)
    agents = invoke(["report", "--format", "json"], dsn=deployed_db).json()["agents"]
    assert (agents["single_record"], agents["without_record"]) == (0, 1)
    assert agents["live"] == sum(
        agents[k]
        for k in ("single_record", "merged_automatically", "needs_review", "without_record")
    )

    table = invoke(["report", "--format", "table"], dsn=deployed_db).stdout
    assert "with a single source record" in table and "Top open review items" in table
    assert re.search(r"without a source record \(all deleted from their source\)\s*│\s*1", table)
    assert "No record" in table  # (the per-score table's columns add up too)
    page = tmp_path / "r.html"
    invoke(["report", "--format", "html", "-o", str(page)], dsn=deployed_db)
    text = page.read_text()
    assert "Top open review items" in text and "Olaf Brand" in text and "olaf@b.com" in text
    assert "single source record" in text


def _report_at(agents: int, needs_review: int) -> Report:
    """A report as the service builds it, for a master table of ``agents`` agents."""
    buckets = []
    per_score = {100: 0.5, 90: 0.2, 80: 0.1, 60: 0.2}
    for score, share in per_score.items():
        n = int(agents * share)
        review = needs_review if score == 60 else 0
        single = n // 2 if score == 100 else 0
        buckets.append(
            {
                "score": score,
                "agents": n,
                "needs_review": review,
                "single_record": single,
                "merged_automatically": n - review - single,
            }
        )
    live = sum(b["agents"] for b in buckets)
    return Report(
        generated_at="2026-01-01T00:00:00+00:00",
        env="dev",
        database={"target": "db:5432/app", "server_version": 150000},
        deployed=True,
        tables=[{"table": "public.new_unified_agents", "rows": live, "estimated": True}],
        agents={
            "live": live,
            "needs_review": needs_review,
            "single_record": sum(b["single_record"] for b in buckets),
            "merged_automatically": sum(b["merged_automatically"] for b in buckets),
            "source_records": live * 2,
            "sources_per_agent": 2.0,
            "duplicate_rate": 0.5,
        },
        confidence=buckets,
        links_by_rule={"email": live, "phone": live // 3, "single": live // 2},
        review={"open": needs_review // 2, "accepted": 0, "rejected": 0},
    )


def _charts(page: str, library: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """name -> (traces, layout) of every plotly figure in the page, read from its JSON."""
    decoder = json.JSONDecoder()
    charts = {}
    text = page.replace(library, "")
    for match in re.finditer(r'Plotly\.newPlot\(\s*"chart-(\w+)",\s*', text):
        traces, end = decoder.raw_decode(text, match.end())
        end = text.index("{", end)
        layout, _ = decoder.raw_decode(text, end)
        charts[match.group(1)] = (traces, layout)
    return charts


def test_page_is_small_and_readable_at_a_million_agents() -> None:
    """Data beside plotly.js stays well under 1 MB at 1M agents; the library is inlined once;
    "needs review" (300 of a million) is drawn on a log axis, so it is visible."""
    small = render_html(_report_at(1_000, 3))
    big = render_html(_report_at(1_000_000, 300))
    library = max(re.findall(r"<script[^>]*>(.*?)</script>", big, flags=re.S), key=len)
    assert len(library) > 1_000_000  # plotly.js itself
    assert big.count(library[:200]) == 1  # embedded once
    beside = len(big.encode()) - len(library.encode())
    assert beside < 100_000, beside
    assert abs(beside - (len(small.encode()) - len(library.encode()))) < 5_000  # no per-agent data
    charts = _charts(big, library)
    traces, layout = charts["confidence"]
    assert layout["yaxis"]["type"] == "log"
    assert {t["name"] for t in traces} == {
        "single source record",
        "merged automatically",
        "needs review",
        "no source record left",
    }
    review = next(t for t in traces if t["name"] == "needs review")
    assert 300 in review["y"]
    assert layout.get("barmode") == "group"  # never stacked under a million others
    outcome_traces, outcome_layout = charts["outcomes"]
    assert outcome_layout["xaxis"]["type"] == "log"
    assert "300" in outcome_traces[0]["text"]
