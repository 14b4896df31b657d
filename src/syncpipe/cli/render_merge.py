"""Render merge results and review items for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncpipe.cli.render import clip

if TYPE_CHECKING:
    from rich.console import Console

    from syncpipe.services.merge.review import ReviewItem
    from syncpipe.services.merge.service import MergeResult

_RULE_ORDER = ("email", "phone", "name_team", "nickname_team", "fuzzy_name", "single", "review")


def _ordered(counts: dict[str, Any]) -> list[tuple[str, int]]:
    rules = sorted(counts, key=lambda r: (_RULE_ORDER.index(r) if r in _RULE_ORDER else 99, r))
    return [(rule, int(counts[rule])) for rule in rules]


def merge_summary(out: Console, result: MergeResult) -> None:
    """Pipeline and merge counts, links by rule, a sample of pairs, phase times."""
    from rich.markup import escape
    from rich.table import Table

    merge, pipe = result.merge, result.pipeline
    verb = "would be" if result.dry_run else "were"
    title = "Merge (dry run: nothing written)" if result.dry_run else "Merge"

    counts = Table(title=title, title_justify="left", show_header=False)
    counts.add_column("What")
    counts.add_column("Count", justify="right")
    rows: list[tuple[str, Any]] = [
        ("team pages read by the member pipeline", pipe.get("pages", 0)),
        ("members new (inserted)", pipe.get("inserted", 0)),
        ("members unchanged", pipe.get("unchanged", 0)),
        ("members changed in place (new e-mail or phone)", pipe.get("changed", 0)),
        ("members removed from re-read pages", pipe.get("removed", 0)),
        ("array entries skipped (not a member)", pipe.get("skipped_not_object", 0)),
        ("members skipped (no name, e-mail or phone)", pipe.get("skipped_empty", 0)),
        ("source records matched", merge.get("pending", 0)),
        ("  of which changed since last matched", merge.get("changed_records", 0)),
        ("agents created", merge.get("agents_created", merge.get("agents_new", 0))),
        (
            "existing agents joined by new records",
            result.existing_agents.get("joined", 0)
            if result.dry_run
            else merge.get("agents_joined", 0),
        ),
        (
            "agents retired (merged into another)",
            result.existing_agents.get("retired", 0)
            if result.dry_run
            else merge.get("agents_retired", 0),
        ),
        ("shared contacts ignored (office lines, info@)", merge.get("shared_contacts", 0)),
    ]
    # (a dry run counts pairs of records; a run queues one item per pair of agents, less
    # the pairs a person already decided)
    if result.dry_run:
        apart = int(merge.get("review_pairs_kept_apart") or 0)
        rows += [
            (
                "record pairs for review (one item per pair of agents)",
                int(merge.get("review_pairs") or 0) - apart,
            ),
            ("record pairs kept apart (a person told their agents apart)", apart),
        ]
    else:
        rows.append(("review items queued", merge.get("review_items_added", 0)))
    for label, value in rows:
        counts.add_row(label, f"{int(value or 0):,}")
    out.print(counts)

    links = merge.get("links") or {}
    placed = merge.get("links_applied") or {}
    if links or placed:
        table = Table(title="Links by rule", title_justify="left")
        table.add_column("Rule")
        table.add_column("Automatic pairs found", justify="right")
        if not result.dry_run:
            table.add_column("Records placed by it", justify="right")
        rules = [r for r, _ in _ordered(links)] + [r for r, _ in _ordered(placed)]
        for rule in dict.fromkeys(rules):
            cells = [rule, f"{int(links.get(rule, 0)):,}"]
            if not result.dry_run:
                cells.append(f"{int(placed.get(rule, 0)):,}")
            table.add_row(*cells)
        out.print(table)

    if result.pairs_sample:
        table = Table(
            title="Sample of proposed pairs (borderline first, then a random pick per rule)",
            title_justify="left",
        )
        for name in ("Outcome", "Rule", "Conf.", "Why", "Record A", "Record B", "Evidence"):
            table.add_column(name, overflow="fold")
        for p in result.pairs_sample:
            table.add_row(
                p["outcome"],
                p["rule"],
                str(p["confidence"]),
                p.get("why", ""),
                escape(clip(_record(p, "a"))),
                escape(clip(_record(p, "b"))),
                escape(str(p["evidence"] or "")),
            )
        out.print(table)
    existing = result.existing_agents
    if result.dry_run and existing:
        out.print(
            f"Existing agents: {int(existing.get('joined', 0)):,} would be joined by "
            f"{int(existing.get('records_joining', 0)):,} new record(s); "
            f"{int(existing.get('retired', 0)):,} would be retired (merged into another)."
        )
        for j in existing.get("joined_sample", []):
            out.print(
                escape(
                    f"  joined: agent {j['agent_id']} {j['name'] or '(no name)'} "
                    f"+ {j['new_records']} record(s)"
                ),
                highlight=False,
            )
        for r in existing.get("retired_sample", []):
            out.print(
                escape(
                    f"  retired: agent {r['agent_id']} {r['name'] or '(no name)'} "
                    f"-> agent {r['into']} {r['into_name'] or '(no name)'}"
                ),
                highlight=False,
            )
    if result.pairs_output:
        out.print(f"{result.pairs_exported:,} pair(s) written to {escape(result.pairs_output)}.")
    for step in result.steps:
        out.print(f"Pipeline step {step['function']}: {step['seconds']:.2f} s.")
    phases = ", ".join(f"{name.replace('_', ' ')} {s:.1f} s" for name, s in result.phases.items())
    out.print(
        f"[green]Merge {'planned' if result.dry_run else 'done'}[/]: "
        f"{int(merge.get('pending', 0)):,} record(s) {verb} matched into "
        f"{int(merge.get('agents_created', merge.get('agents_new', 0))):,} new agent(s), "
        f"in {result.seconds:.2f} s" + (f" ({phases})." if phases else ".")
    )


def _record(pair: dict[str, Any], side: str) -> str:
    """One record of a pair: name, full id, team, emails and phones, one per line."""
    lines = [
        f"{pair[f'{side}_name'] or '(no name)'}",
        f"{pair[f'{side}_kind']} {pair[f'{side}_id']}",
        f"team {pair[f'{side}_team_id'] or '-'}",
        ", ".join(pair.get(f"{side}_emails") or []),
        ", ".join(pair.get(f"{side}_phones") or []),
    ]
    return "\n".join(line for line in lines if line)


def review_table(out: Console, items: list[ReviewItem], *, total: int) -> None:
    """Open review items, both sides' values side by side."""
    from rich.markup import escape
    from rich.table import Table

    if not items:
        out.print("No open review items.")
        return
    table = Table(title=f"Open review items ({total:,})", title_justify="left")
    for name in ("Id", "Rule", "Conf.", "Weight", "Agent A", "Agent B", "Evidence"):
        table.add_column(name, overflow="fold")
    for item in items:
        table.add_row(
            str(item.id),
            item.rule,
            str(item.confidence),
            f"{item.weight:+.1f}" if item.weight is not None else "-",
            escape(clip(item.side_a.describe())),
            escape(clip(item.side_b.describe())),
            escape(item.evidence_text()),
        )
    out.print(table)
