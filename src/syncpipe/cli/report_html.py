"""The report as one self-contained HTML page: plotly.js, styles and data inline, no network.

Charts (plotly): the confidence score histogram of the master table, links by rule, and run
durations over time (merges, member pipelines, loads). Around them: headline figures, row
counts, review counts, and the recent runs, laid out to be read at a glance.
"""

from __future__ import annotations

import html
import math
from typing import Any

from syncpipe.services.report import Report

#: (confidence bucket key, label, colour) of the four outcomes an agent can have.
OUTCOMES = (
    ("single_record", "single source record", "#94a3b8"),
    ("merged_automatically", "merged automatically", "#2563eb"),
    ("needs_review", "needs review", "#f59e0b"),
    ("without_record", "no source record left", "#475569"),
)

_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --accent:#2563eb;
        --ok:#15803d; --bad:#b91c1c; --warn:#b45309; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#111827; color:#f9fafb; padding:18px 32px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header p { margin:4px 0 0; color:#cbd5e1; font-size:13px; }
main { max-width:1280px; margin:0 auto; padding:24px 32px 48px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit,minmax(180px,1fr)); gap:14px; }
.kpi { background:#fff; border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
.kpi .v { font-size:26px; font-weight:650; }
.kpi .l { color:var(--muted); font-size:13px; }
.grid { display:grid; grid-template-columns:repeat(2,minmax(0,1fr)); gap:18px; margin-top:18px; }
@media (max-width: 1000px) { .grid { grid-template-columns:minmax(0,1fr); } }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:16px 18px;
          min-width:0; overflow-x:auto; }
section h2 { margin:0 0 8px; font-size:16px; font-weight:600; }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
.ok { color:var(--ok); } .failed { color:var(--bad); } .running { color:var(--warn); }
.note { background:#fffbeb; border:1px solid #fde68a; border-radius:10px; padding:12px 16px;
        margin-bottom:16px; }
.empty { color:var(--muted); font-style:italic; }
section.wide { grid-column:1 / -1; }
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return _esc(value)


def _table(headers: list[tuple[str, bool]], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_esc(empty)}</p>'
    head = "".join(f'<th class="{"n" if n else ""}">{_esc(h)}</th>' for h, n in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"n" if headers[i][1] else ""}">{cell}</td>' for i, cell in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status(value: str | None) -> str:
    css = {"success": "ok", "loaded": "ok", "failed": "failed", "running": "running"}
    return f'<span class="{css.get(value or "", "")}">{_esc(value)}</span>'


def _side(side: dict[str, Any]) -> str:
    """One agent of a review pair: name, team, emails and phones."""
    parts = [
        f"<b>{_esc(side.get('full_name') or '(no name)')}</b> #{_esc(side.get('agent_id'))}",
        f"team {_esc(side.get('team_id') or '-')}",
        _esc(", ".join(side.get("emails") or [])),
        _esc(", ".join(side.get("phones") or [])),
    ]
    return "<br>".join(p for p in parts if p)


def _figures(report: Report) -> dict[str, Any]:
    import plotly.graph_objects as go

    layout = {
        "margin": {"l": 50, "r": 16, "t": 10, "b": 44},
        "height": 320,
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "xaxis": {"gridcolor": "#eef0f3"},
        "yaxis": {"gridcolor": "#eef0f3", "rangemode": "tozero"},
    }
    figures: dict[str, Any] = {}

    # The outcomes, never stacked on a linear axis: at a million agents a few hundred
    # "needs review" would be invisible. Grouped bars on a log axis keep every count readable.
    scores = [c["score"] for c in report.confidence]
    conf = go.Figure(
        [
            go.Bar(
                x=scores,
                y=[c.get(key, 0) or None for c in report.confidence],
                name=label,
                marker_color=color,
            )
            for key, label, color in OUTCOMES
        ]
    )
    conf.update_layout(
        **layout,
        barmode="group",
        xaxis_title="confidence score",
        yaxis_title="agents (log scale)",
        legend={"orientation": "h", "y": 1.12},
    )
    # from below 1 so that a single agent is a visible bar; labels at powers of ten only
    top = max([c["agents"] for c in report.confidence] or [1])
    conf.update_yaxes(type="log", range=[-0.3, math.log10(max(top, 1)) + 0.3], dtick=1)
    conf.update_xaxes(range=[-2, 102], dtick=10)
    figures["confidence"] = conf

    a = report.agents
    outcome = go.Figure(
        go.Bar(
            y=[label for _, label, _ in OUTCOMES],
            x=[a.get(key, 0) or None for key, _, _ in OUTCOMES],
            orientation="h",
            marker_color=[color for _, _, color in OUTCOMES],
            text=[f"{a.get(key, 0):,}" for key, _, _ in OUTCOMES],
            textposition="outside",
        )
    )
    outcome.update_layout(**{**layout, "height": 200}, xaxis_title="agents (log scale)")
    outcome.update_xaxes(
        type="log", range=[-0.3, math.log10(max(a.get("live", 1) or 1, 1)) + 0.5], dtick=1
    )
    outcome.update_yaxes(autorange="reversed")
    figures["outcomes"] = outcome

    rules = list(report.links_by_rule)
    links = go.Figure(
        go.Bar(
            x=[report.links_by_rule[r] for r in rules],
            y=rules,
            orientation="h",
            marker_color="#0f766e",
            text=[f"{report.links_by_rule[r]:,}" for r in rules],
            textposition="auto",
        )
    )
    links.update_layout(**layout, xaxis_title="source records placed")
    links.update_yaxes(autorange="reversed")
    figures["links"] = links

    durations = go.Figure()
    for kind, color in (("merge", "#7c3aed"), ("member_pipeline", "#db2777")):
        runs = [r for r in report.runs if r["kind"] == kind and r["duration_s"] is not None]
        durations.add_trace(
            go.Scatter(
                x=[r["started_at"] for r in runs],
                y=[r["duration_s"] for r in runs],
                mode="lines+markers",
                name=kind.replace("_", " "),
                marker_color=color,
            )
        )
    durations.add_trace(
        go.Scatter(
            x=[ld["finished_at"] for ld in report.loads],
            y=[ld["duration_s"] for ld in report.loads],
            mode="markers",
            name="file load",
            marker={"color": "#ea580c", "symbol": "diamond", "size": 9},
            text=[ld["file"] for ld in report.loads],
        )
    )
    durations.update_layout(**layout, yaxis_title="seconds", legend={"orientation": "h", "y": 1.12})
    figures["durations"] = durations
    return figures


def render_html(report: Report) -> str:
    """The whole page."""
    figures = _figures(report) if report.deployed else {}
    charts: dict[str, str] = {}
    first = True
    for name, fig in figures.items():
        charts[name] = fig.to_html(
            full_html=False,
            include_plotlyjs=first,  # the library once, inline, before the first chart
            div_id=f"chart-{name}",
            config={"displaylogo": False, "displayModeBar": False, "responsive": True},
        )
        first = False

    a = report.agents
    kpis = [
        ("agents", a.get("live", 0)),
        ("source records", a.get("source_records", 0)),
        ("sources per agent", a.get("sources_per_agent", 0.0)),
        ("duplicates found", f"{a.get('duplicate_rate', 0.0) * 100:.1f}%"),
        ("single source record", a.get("single_record", 0)),
        ("merged automatically", a.get("merged_automatically", 0)),
        ("agents needing review", a.get("needs_review", 0)),
        ("open review items", report.review.get("open", 0)),
    ]
    kpi_html = "".join(
        f'<div class="kpi"><div class="v">{_num(v)}</div><div class="l">{_esc(k)}</div></div>'
        for k, v in kpis
    )
    notes = "".join(f'<div class="note">{_esc(n)}</div>' for n in report.notes)

    tables = _table(
        [("table", False), ("rows", True)],
        [
            [_esc(t["table"]), _num(t["rows"]) + (" (est.)" if t.get("estimated") else "")]
            for t in report.tables
        ],
        "No tables yet.",
    )
    loads = _table(
        [("file", False), ("table", False), ("rows", True), ("rejected", True), ("rows/s", True)],
        [
            [
                _esc(ld["file"]),
                _esc(ld["table"]),
                _num(ld["rows_read"]),
                _num(ld["rejected"]),
                _num(ld["rows_per_s"]),
            ]
            for ld in report.loads[-10:]
        ],
        "No file loaded yet.",
    )
    runs = _table(
        [
            ("run", False),
            ("kind", False),
            ("status", False),
            ("started", False),
            ("seconds", True),
            ("records", True),
        ],
        [
            [
                str(r["id"]),
                _esc(r["kind"]),
                _status(r["status"]),
                _esc(r["started_at"]),
                _num(r["duration_s"]),
                _num(r["records"]),
            ]
            for r in report.runs[-12:]
        ],
        "No merge has run yet.",
    )
    pool = (report.last_run or {}).get("pool") or {}
    last = report.last_run
    last_html = (
        _table(
            [("step", False), ("status", False), ("seconds", True)],
            [
                [_esc(s["name"]), _status(s["status"]), _num(s["duration_s"])]
                for s in last.get("steps", [])
            ],
            "No steps recorded.",
        )
        + (
            f"<p>Connection pool: peak {_num(pool.get('peak_in_use'))} of "
            f"{_num(pool.get('max_size'))} connections in use.</p>"
            if pool
            else ""
        )
        if last
        else '<p class="empty">No deploy or full run recorded in this database yet.</p>'
    )
    review_items = _table(
        [("item", True), ("rule", False), ("conf.", True), ("agent A", False), ("agent B", False)],
        [
            [
                str(item["id"]),
                _esc(item["rule"]),
                str(item["confidence"]),
                _side(item["a"]),
                _side(item["b"]),
            ]
            for item in report.review_items
        ],
        "No open review item.",
    )

    def chart(name: str, title: str) -> str:
        body = charts.get(name) or '<p class="empty">Nothing to chart yet.</p>'
        return f'<section id="{name}"><h2>{_esc(title)}</h2>{body}</section>'

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>syncpipe report: {_esc(report.database.get("target"))}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>syncpipe report</h1>
<p>{_esc(report.database.get("target"))} &middot; env {_esc(report.env)} &middot;
generated {_esc(report.generated_at)} &middot; syncpipe {_esc(report.to_dict()["tool_version"])}</p>
</header>
<main>
{notes}
<div class="kpis">{kpi_html}</div>
<div class="grid">
{chart("confidence", "Confidence scores of the master table")}
{chart("outcomes", "Agents by outcome")}
{chart("links", "Links by rule")}
{chart("durations", "Run durations over time")}
<section id="tables"><h2>Rows per table</h2>{tables}</section>
<section id="runs"><h2>Recent merge runs</h2>{runs}</section>
<section id="loads" class="wide"><h2>Recent loads</h2>{loads}</section>
<section id="review-items" class="wide"><h2>Top open review items
({_num(report.review.get("open", 0))} open; decide with <code>syncpipe review</code>)</h2>
{review_items}</section>
<section id="last-run"><h2>Last deploy or full run</h2>{last_html}</section>
</div>
</main>
</body>
</html>
"""
