"""Rendering of ``deploy --full``: one line per step, then where the reports are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console

    from syncpipe.services.runs import FullRun

_STYLE = {"success": "green", "failed": "bold red", "running": "yellow"}


def _summary(name: str, d: dict[str, Any]) -> str:
    """The figures a person wants from each step's details."""
    if name == "deploy":
        return f"{d.get('applied', 0)} file(s) applied, {d.get('unchanged', 0)} unchanged"
    if name == "verify":
        s = d.get("summary", {})
        return f"{s.get('pass', 0)} passed, {s.get('fail', 0)} failed, {s.get('warn', 0)} warned"
    if name == "load":
        t = d.get("totals", {})
        files = d.get("files", [])
        skipped = sum(1 for f in files if f.get("status") == "skipped")
        if files and skipped == len(files):
            return f"{skipped} file(s) already loaded, skipped"
        return (
            f"{len(files)} file(s), {t.get('rows_read', 0):,} rows read, "
            f"{t.get('inserted', 0):,} inserted, {t.get('updated', 0):,} updated, "
            f"{t.get('rejected', 0):,} rejected"
        )
    if name == "merge":
        m = d.get("merge", {})
        return (
            f"{m.get('pending', 0):,} record(s): {m.get('agents_created', 0):,} agent(s) "
            f"created, {m.get('agents_joined', 0):,} joined, "
            f"{m.get('review_items_added', 0):,} review item(s) added"
        )
    if name == "report":
        return str(d.get("html", ""))
    return ""


def full_run_table(out: Console, run: FullRun) -> None:
    """The steps of the run with status, time and figures."""
    table = Table(title=f"Full run ({run.report.env})", title_justify="left")
    table.add_column("Step")
    table.add_column("Status")
    table.add_column("Time", justify="right")
    table.add_column("Result")
    for step in run.report.steps:
        style = _STYLE.get(step.status, "")
        detail = escape(step.error) if step.error else escape(_summary(step.name, step.details))
        table.add_row(
            step.name,
            f"[{style}]{step.status}[/]" if style else step.status,
            f"{step.duration_s:.1f} s" if step.duration_s is not None else "",
            detail,
        )
    out.print(table)
    if run.report_path is not None:
        out.print(f"Run report: {escape(str(run.report_path))}")
    if run.html_path is not None:
        out.print(f"HTML report: {escape(str(run.html_path))}")
