"""``syncpipe report``: JSON keys and values, tables, the HTML page in a real headless
Chromium, and the bad cases (undeployed, empty, unwritable output)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.agents import Sources
from tests.chromium import chromium_binary, open_page
from tests.helpers import Invoke, one


def _outside_scripts(html: str) -> str:
    """The page without its inline script bodies (plotly.js mentions tags in strings)."""
    return re.sub(r"(<script\b[^>]*>).*?</script>", r"\1</script>", html, flags=re.S)


SAMPLE = Path(__file__).resolve().parent.parent / "data"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

JSON_KEYS = {
    "report_version",
    "tool_version",
    "generated_at",
    "env",
    "database",
    "deployed",
    "tables",
    "agents",
    "confidence_distribution",
    "links_by_rule",
    "review",
    "review_items",
    "loads",
    "merge_runs",
    "deploys",
    "last_run",
    "notes",
}


@pytest.fixture
def merged_db(invoke: Invoke, deployed_db: str) -> str:
    """The sample data fully run: deployed, loaded, merged (logs/ has the run report)."""
    invoke(["deploy", "--full"], dsn=deployed_db, env={"SYNCPIPE_DATA_DIR": str(SAMPLE)})
    return deployed_db


def test_json_report_after_a_full_run(invoke: Invoke, merged_db: str) -> None:
    data = invoke(["report", "--format", "json"], dsn=merged_db).json()
    assert set(data) == JSON_KEYS
    assert data["report_version"] == 1 and data["deployed"] is True and data["notes"] == []
    counts = {t["table"]: t["rows"] for t in data["tables"]}
    assert counts["public.new_agents"] == one(merged_db, "SELECT count(*) FROM new_agents")
    assert counts["public.new_unified_agents"] == one(
        merged_db, "SELECT count(*) FROM new_unified_agents"
    )
    assert not any(
        t["estimated"] or t["missing"] for t in data["tables"]
    )  # small tables are counted, not estimated
    agents = data["agents"]
    live = one(merged_db, "SELECT count(*) FROM new_unified_agents WHERE merged_into IS NULL")
    assert agents["live"] == live
    assert agents["source_records"] == one(merged_db, "SELECT count(*) FROM unified_agent_sources")
    assert agents["needs_review"] == one(
        merged_db, "SELECT count(*) FROM new_unified_agents WHERE needs_review"
    )
    assert agents["sources_per_agent"] == pytest.approx(agents["source_records"] / live, abs=0.01)
    # the distribution covers every live agent
    assert sum(b["agents"] for b in data["confidence_distribution"]) == live
    assert {b["score"] for b in data["confidence_distribution"]} >= {100, 90, 80}
    assert data["links_by_rule"]["email"] > 0 and data["links_by_rule"]["single"] > 0
    assert data["review"]["open"] == one(
        merged_db, "SELECT count(*) FROM merge_review_queue WHERE status = 'open'"
    )
    assert {ld["table"] for ld in data["loads"]} == {
        "public.new_agents",
        "bronze.company_info_raw",
    }
    assert all(ld["rows_per_s"] > 0 for ld in data["loads"])
    assert [r["kind"] for r in data["merge_runs"]][-2:] == ["member_pipeline", "merge"]
    assert all(r["duration_s"] is not None for r in data["merge_runs"])
    assert data["last_run"]["kind"] == "full" and data["last_run"]["status"] == "success"
    assert data["last_run"]["pool"]["max_size"] == 10
    assert data["last_run"]["pool"]["peak_in_use"] >= 1
    assert "password" not in str(data["database"])


def test_table_report_on_a_terminal_format(invoke: Invoke, merged_db: str) -> None:
    out = invoke(["report", "--format", "table"], dsn=merged_db).stdout
    for heading in (
        "Rows per table",
        "Master table",
        "Confidence scores",
        "Links by rule",
        "Recent loads",
        "Recent merge runs",
        "Connection pool: peak",
    ):
        assert heading in out, heading


def test_report_on_an_undeployed_database(invoke: Invoke, fresh_db: str) -> None:
    data = invoke(["report", "--format", "json"], dsn=fresh_db).json()
    assert data["deployed"] is False and data["tables"] == []
    assert "has not been deployed" in data["notes"][0]
    text = invoke(["report", "--format", "table"], dsn=fresh_db)
    assert "has not been deployed" in text.stdout and "Traceback" not in text.stderr


def test_report_on_an_empty_database(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    data = invoke(["report", "--format", "json"], dsn=deployed_db).json()
    assert data["deployed"] is True and data["agents"]["live"] == 0
    assert "holds no data yet" in data["notes"][0]
    page = tmp_path / "empty.html"
    invoke(["report", "--format", "html", "--output", str(page)], dsn=deployed_db)
    assert "holds no data yet" in page.read_text()


def test_report_output_that_cannot_be_written(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke(
        ["report", "--format", "json", "--output", str(blocker / "report.json")],
        dsn=deployed_db,
        code=2,
    )
    assert "is not a folder" in result.stderr and str(blocker) in result.stderr
    missing_folder = tmp_path / "no" / "such"
    result = invoke(
        ["report", "--format", "json", "--output", str(missing_folder / "report.json")],
        dsn=deployed_db,
        code=2,
    )
    assert f"the folder {missing_folder} does not exist" in result.stderr
    assert not (tmp_path / "no").exists()
    assert "Traceback" not in result.stderr
    missing = invoke(["report", "--format", "html"], dsn=deployed_db, code=2)
    assert "--output" in missing.stderr
    bad = invoke(["report", "--format", "pdf"], dsn=deployed_db, code=2)
    assert "pdf" in bad.stderr


def test_report_reads_aggregates_of_a_bigger_merge(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Confidence buckets and rules add up on a run with review items and merges."""
    src = Sources()
    src.agent("Nora Quist", emails=["nora@mail.com"])
    src.page("team-1", [{"name": "Nora Quist", "email": "NORA@mail.com"}])
    src.agent("Olaf Brandt", team="team-2")
    src.page("team-2", [{"name": "Olaf Brand"}])
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    data = invoke(["report", "--format", "json"], dsn=deployed_db).json()
    assert data["agents"]["live"] == 3 and data["agents"]["needs_review"] == 2
    assert data["review"]["open"] == 1
    assert data["links_by_rule"] == {"email": 2, "single": 2}
    assert data["agents"]["duplicate_rate"] == pytest.approx(1 - 3 / 4, abs=0.001)


@pytest.mark.skipif(
    chromium_binary() is None and not os.environ.get("SYNCPIPE_REQUIRE_CHROMIUM"),
    reason="no chromium on PATH (.ci/run installs Debian's package)",
)
def test_html_report_renders_in_headless_chromium(
    invoke: Invoke, merged_db: str, tmp_path: Path
) -> None:
    page_path = tmp_path / "report.html"
    invoke(["report", "--format", "html", "--output", str(page_path)], dsn=merged_db)
    tags = re.findall(r"<(script|link|img)\b([^>]*)>", _outside_scripts(page_path.read_text()))
    assert tags and not [t for t in tags if re.search(r"\b(src|href)=", t[1])]  # all inline
    with open_page(page_path.as_uri()) as page:
        rendered = page.evaluate(
            """(async () => {
                const wait = (ms) => new Promise((r) => setTimeout(r, ms));
                const drawn = () => ['chart-confidence', 'chart-links', 'chart-durations']
                    .every((id) => document.querySelector(`#${id} svg.main-svg g.trace`));
                // plotly draws asynchronously: give a busy machine up to 20 s
                for (let i = 0; i < 200 && !drawn(); i++) await wait(100);
                const chart = (id) => {
                    const el = document.getElementById(id);
                    return el ? {
                        svg: el.querySelectorAll('svg.main-svg').length,
                        bars: el.querySelectorAll('g.point path, g.trace.bars path').length,
                        lines: el.querySelectorAll('g.scatterlayer path.js-line').length,
                        height: el.getBoundingClientRect().height,
                    } : null;
                };
                return {
                    title: document.title,
                    confidence: chart('chart-confidence'),
                    links: chart('chart-links'),
                    durations: chart('chart-durations'),
                    kpis: [...document.querySelectorAll('.kpi .l')].map((e) => e.textContent),
                    tables: document.querySelectorAll('table').length,
                };
            })()"""
        )
        shutil.rmtree(ARTIFACTS / "report", ignore_errors=True)
        page.screenshot(ARTIFACTS / "report" / "report.png")
        errors = list(page.console_errors)
        requests = [u for u in page.requests if not u.startswith(("file:", "data:", "about:"))]
    assert errors == []
    assert requests == []  # no network at view time
    assert "syncpipe" in rendered["title"]
    for name in ("confidence", "links"):
        chart = rendered[name]
        assert chart and chart["svg"] >= 1 and chart["bars"] >= 2 and chart["height"] > 100, name
    durations = rendered["durations"]
    assert durations and durations["svg"] >= 1 and durations["height"] > 100
    assert any("review" in label.lower() for label in rendered["kpis"])
    assert rendered["tables"] >= 3
    assert (ARTIFACTS / "report" / "report.png").stat().st_size > 10_000
