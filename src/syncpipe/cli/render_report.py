"""``syncpipe report --format table``: the report as rich tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncpipe.cli.render import clip

if TYPE_CHECKING:
    from rich.console import Console

    from syncpipe.services.report import Report


def report_tables(out: Console, report: Report) -> None:
    from rich.markup import escape
    from rich.table import Table

    out.print(
        f"[bold]syncpipe report[/]: {escape(str(report.database.get('target')))} "
        f"(env {escape(report.env)}, {report.generated_at})"
    )
    for note in report.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    if not report.deployed:
        return

    tables = Table(title="Rows per table", title_justify="left")
    tables.add_column("Table")
    tables.add_column("Rows", justify="right")
    for t in report.tables:
        tables.add_row(t["table"], f"{t['rows']:,}" + (" (est.)" if t.get("estimated") else ""))
    out.print(tables)

    a = report.agents
    agents = Table(title="Master table", title_justify="left", show_header=False)
    agents.add_column("What")
    agents.add_column("Value", justify="right")
    for label, value in (
        ("agents", f"{a.get('live', 0):,}"),
        ("retired ids (merged into another)", f"{a.get('retired', 0):,}"),
        ("source records", f"{a.get('source_records', 0):,}"),
        ("source records per agent", f"{a.get('sources_per_agent', 0.0):.2f}"),
        ("duplicate rate", f"{a.get('duplicate_rate', 0.0) * 100:.1f}%"),
        ("  with a single source record (nothing merged)", f"{a.get('single_record', 0):,}"),
        ("  merged automatically", f"{a.get('merged_automatically', 0):,}"),
        ("  needing review", f"{a.get('needs_review', 0):,}"),
        (
            "  without a source record (all deleted from their source)",
            f"{a.get('without_record', 0):,}",
        ),
        ("open review items", f"{report.review.get('open', 0):,}"),
        (
            "review decisions (accepted / rejected)",
            f"{report.review.get('accepted', 0):,} / {report.review.get('rejected', 0):,}",
        ),
    ):
        agents.add_row(label, value)
    out.print(agents)

    if report.confidence:
        conf = Table(title="Confidence scores", title_justify="left")
        for name in (
            "Score",
            "Agents",
            "Single record",
            "Merged automatically",
            "Needs review",
            "No record left",
        ):
            conf.add_column(name, justify="right")
        for c in report.confidence:
            conf.add_row(
                str(c["score"]),
                f"{c['agents']:,}",
                f"{c.get('single_record', 0):,}",
                f"{c.get('merged_automatically', 0):,}",
                f"{c['needs_review']:,}",
                f"{c.get('without_record', 0):,}",
            )
        out.print(conf)

    if report.review_items:
        items = Table(
            title=f"Top open review items ({report.review.get('open', 0):,} open)",
            title_justify="left",
        )
        for name in ("Id", "Rule", "Conf.", "Agent A", "Agent B"):
            items.add_column(name, overflow="fold")
        for item in report.review_items:
            items.add_row(
                str(item["id"]),
                item["rule"],
                str(item["confidence"]),
                escape(clip(_side(item["a"]))),
                escape(clip(_side(item["b"]))),
            )
        out.print(items)

    if report.links_by_rule:
        links = Table(title="Links by rule (source records placed)", title_justify="left")
        links.add_column("Rule")
        links.add_column("Records", justify="right")
        for rule, n in report.links_by_rule.items():
            links.add_row(rule, f"{n:,}")
        out.print(links)

    if report.loads:
        loads = Table(title="Recent loads", title_justify="left")
        for name in ("File", "Table", "Rows", "Rejected", "Rows/s", "Finished"):
            loads.add_column(
                name, justify="right" if name in ("Rows", "Rejected", "Rows/s") else "left"
            )
        for ld in report.loads[-10:]:
            loads.add_row(
                escape(ld["file"]),
                ld["table"],
                f"{ld['rows_read']:,}",
                f"{ld['rejected']:,}",
                f"{ld['rows_per_s']:,}",
                ld["finished_at"],
            )
        out.print(loads)

    if report.runs:
        runs = Table(title="Recent merge runs", title_justify="left")
        for name in ("Id", "Kind", "Status", "Started", "Seconds", "Records"):
            runs.add_column(
                name, justify="right" if name in ("Id", "Seconds", "Records") else "left"
            )
        for r in report.runs[-10:]:
            seconds = f"{r['duration_s']:.2f}" if r["duration_s"] is not None else ""
            runs.add_row(
                str(r["id"]), r["kind"], r["status"], r["started_at"], seconds, f"{r['records']:,}"
            )
        out.print(runs)

    last = report.last_run
    if last:
        pool = last.get("pool") or {}
        steps = ", ".join(
            f"{s['name']} {s['status']} {s['duration_s'] or 0:.1f} s" for s in last.get("steps", [])
        )
        out.print(
            f"Last {last.get('kind')} run: {last.get('status')} ({steps})."
            + (
                f" Connection pool: peak {pool.get('peak_in_use')} of "
                f"{pool.get('max_size')} in use."
                if pool
                else ""
            )
        )


def _side(side: dict[str, Any]) -> str:
    """One agent of a review pair: name and id, team, emails, phones."""
    emails = ", ".join(str(e) for e in side.get("emails") or [])
    phones = ", ".join(str(p) for p in side.get("phones") or [])
    lines = [
        f"{side.get('full_name') or '(no name)'} #{side.get('agent_id')}",
        f"team {side.get('team_id') or '-'}",
        emails,
        phones,
    ]
    return "\n".join(line for line in lines if line)
