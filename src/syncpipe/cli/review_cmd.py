"""``syncpipe review``: list, accept, reject, or walk through the open review items."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from syncpipe.cli.render import clip

if TYPE_CHECKING:
    from syncpipe.cli.context import AppContext
    from syncpipe.services.merge.review import ReviewItem

REVIEW_HELP = """Pairs the merge was not sure about: list them, accept or reject them.

Without a subcommand, lists the open items, strongest first, both agents side by side.

Example:
    syncpipe review
    syncpipe review --limit 5 --json
    syncpipe review accept 1 --by alice
    syncpipe review walk
"""


def _named(value: str | None) -> str | None:
    # (an empty name was recorded as the login name, silently)
    if value is not None and not value.strip():
        raise typer.BadParameter("is empty: name who decides, or leave --by out")
    return value


_BY = typer.Option(
    "--by",
    callback=_named,
    help="Who decides (default: $SYNCPIPE_REVIEWER or the login name).",
)
# (item ids are bigint: a larger number is a usage error, not a database error)
_IDS = typer.Argument(help="Review item ids.", min=1, max=2**63 - 1, metavar="ID")


def review(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=2**63 - 1, help="Items to show.")
    ] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print the items as JSON.")] = False,
) -> None:
    """List the open review items with both agents side by side (the default action)."""
    if ctx.invoked_subcommand is not None:
        return
    from syncpipe.cli import render
    from syncpipe.cli.render_merge import review_table
    from syncpipe.services.merge.review import ReviewService

    app_ctx: AppContext = ctx.find_root().obj
    items, total = ReviewService(app_ctx.db).open_items(limit)
    if json_out:
        render.print_json(app_ctx.out, {"open": total, "items": [item.to_dict() for item in items]})
    else:
        review_table(app_ctx.out, items, total=total)
        if total > len(items):
            app_ctx.out.print(f"[dim]{total - len(items):,} more; use --limit to see them.[/]")
        if items:
            app_ctx.out.print(
                "Decide with `syncpipe review accept ID` or `syncpipe review reject ID`."
            )


def _outcome_sentence(review_id: int, decision: str, outcome: dict[str, object]) -> str:
    a, b = outcome.get("agent_id"), outcome.get("candidate_agent_id")
    if outcome.get("settled"):
        agents = f"agent {a}" if a == b else f"agents {a} and {b}"
        return (
            f"Review item {review_id} was settled already: {outcome.get('reason')} "
            f"({agents}); it was taken off the queue."
        )
    if decision == "accept":
        return (
            f"Review item {review_id} accepted: agents {a} and {b} are now agent "
            f"{outcome.get('survivor')}."
        )
    return f"Review item {review_id} rejected: agents {a} and {b} stay apart on every later merge."


def _decide(ctx: typer.Context, ids: list[int], decision: str, by: str | None) -> None:
    from rich.markup import escape

    from syncpipe.core.errors import EXIT_FAILED, JobFailedError
    from syncpipe.logs import get_logger
    from syncpipe.services.merge.review import ReviewService, default_reviewer

    app_ctx: AppContext = ctx.find_root().obj
    service = ReviewService(app_ctx.db)
    log = get_logger(__name__)
    reviewer = by or default_reviewer()
    failed = 0
    for review_id in dict.fromkeys(ids):  # (an id given twice is decided once)
        try:
            outcome = service.decide(review_id, decision, reviewer)
        except JobFailedError as exc:
            failed += 1
            # (in the log files too: the command's own failure record says only "exit 1")
            log.warning("review.not_decided", id=review_id, decision=decision, reason=str(exc))
            app_ctx.console.print(f"[bold red]Error[/]: {escape(str(exc))}", highlight=False)
            continue
        log.info("review.decided", id=review_id, decision=decision, by=reviewer, outcome=outcome)
        app_ctx.out.print(_outcome_sentence(review_id, decision, outcome), highlight=False)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def accept(
    ctx: typer.Context,
    ids: Annotated[list[int], _IDS],
    by: Annotated[str | None, _BY] = None,
) -> None:
    """Accept review items: the two agents of each become one (the lower id survives).

    An item whose agents changed since it was queued is not decided: look again, decide again.

    Example:
        syncpipe review accept 1
        syncpipe review accept 1 2 --by alice   # exit 1 if an item is not open (decided, unknown)
    """
    _decide(ctx, ids, "accept", by)


def reject(
    ctx: typer.Context,
    ids: Annotated[list[int], _IDS],
    by: Annotated[str | None, _BY] = None,
) -> None:
    """Reject review items: the two agents stay apart, and the pair never comes back.

    An item whose agents changed since it was queued is not decided: look again, decide again.

    Example:
        syncpipe review reject 1
        syncpipe review reject 1 --by alice
    """
    _decide(ctx, ids, "reject", by)


_CHOICES = {"a": "accept", "r": "reject", "s": "skip", "q": "quit"}


def walk(
    ctx: typer.Context,
    by: Annotated[str | None, _BY] = None,
) -> None:
    """Go through the open items one by one on a terminal: accept, reject, skip or quit.

    Each item shows both agents' names, teams, emails and phones side by side and its place
    in the queue ("3 of 17"); each decision is confirmed as it is recorded.

    Example:
        syncpipe review walk
        syncpipe review walk --by alice
    """
    from syncpipe.core.errors import ConfigError, JobFailedError
    from syncpipe.services.merge.review import (
        ReviewItemChangedError,
        ReviewService,
        default_reviewer,
    )

    app_ctx: AppContext = ctx.find_root().obj
    if not app_ctx.console.is_terminal:
        raise ConfigError(
            "`syncpipe review walk` needs a terminal; use `syncpipe review accept ID` or "
            "`syncpipe review reject ID` in scripts."
        )
    service = ReviewService(app_ctx.db)
    who = by or default_reviewer()
    skipped: set[int] = set()
    decided = 0
    position = 0
    while True:
        items, total = service.open_items(limit=len(skipped) + 1)
        pending = [item for item in items if item.id not in skipped]
        if not pending:
            break
        item = pending[0]
        position += 1
        # items seen so far, plus those still open and not skipped (this one among them)
        _show(app_ctx, item, position, position - 1 + total - len(skipped))
        try:
            answer = _ask(app_ctx)
        except EOFError:  # end of input (Ctrl-D): stop, as with "q"
            answer = "q"
        if answer == "q":
            break
        if answer == "s":
            skipped.add(item.id)
            app_ctx.console.print(f"Skipped review item {item.id}.", highlight=False)
            continue
        decision = _CHOICES[answer]
        try:
            outcome = service.decide(item.id, decision, who)
        except ReviewItemChangedError as exc:
            from rich.markup import escape

            # (nothing decided: the item is shown again as it is now, and asked again)
            app_ctx.console.print(f"[bold yellow]changed[/]: {escape(str(exc))}", highlight=False)
            position -= 1
            continue
        except JobFailedError as exc:
            from rich.markup import escape

            app_ctx.console.print(f"[bold red]Error[/]: {escape(str(exc))}", highlight=False)
            skipped.add(item.id)
            continue
        decided += 1
        app_ctx.console.print(
            f"[green]✓[/] {_outcome_sentence(item.id, decision, outcome)}", highlight=False
        )
    app_ctx.out.print(
        f"{decided} decision(s) recorded; {len(skipped)} item(s) skipped.", highlight=False
    )


def _show(app_ctx: AppContext, item: ReviewItem, position: int, total: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=(
            f"Review item {item.id} — {position} of {max(total, position)}: rule {item.rule}, "
            f"confidence {item.confidence}"
        ),
        title_justify="left",
    )
    table.add_column("")
    table.add_column(f"Agent #{item.side_a.agent_id}", overflow="fold")
    table.add_column(f"Agent #{item.side_b.agent_id}", overflow="fold")
    a, b = item.side_a, item.side_b
    rows = [
        ("name", a.full_name or "(no name)", b.full_name or "(no name)"),
        ("team", a.team_id or "-", b.team_id or "-"),
        ("emails", "\n".join(a.emails) or "-", "\n".join(b.emails) or "-"),
        ("phones", "\n".join(a.phones) or "-", "\n".join(b.phones) or "-"),
        ("source records", str(a.sources), str(b.sources)),
    ]
    if a.survivor != a.agent_id or b.survivor != b.agent_id:
        rows.append(("now part of", f"#{a.survivor}", f"#{b.survivor}"))
    for label, left, right in rows:
        table.add_row(label, escape(clip(left)), escape(clip(right)))
    app_ctx.console.print(table)
    app_ctx.console.print(f"Evidence: {escape(item.evidence_text())}", highlight=False)


def _ask(app_ctx: AppContext) -> str:
    from rich.markup import escape
    from rich.prompt import Prompt

    return Prompt.ask(
        escape("[a]ccept, [r]eject, [s]kip, [q]uit"),
        choices=list(_CHOICES),
        default="s",
        console=app_ctx.console,
    )
