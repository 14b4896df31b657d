"""``syncpipe review``: list, accept, reject, or walk through the open review items."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from syncpipe.cli import app
from syncpipe.cli.errors import cli_errors

if TYPE_CHECKING:
    from syncpipe.cli.context import AppContext

review_app = typer.Typer(
    help="Pairs the merge was not sure about: list them, accept or reject them.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(review_app, name="review")

_BY = typer.Option("--by", help="Who decides (default: $SYNCPIPE_REVIEWER or the login name).")


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Items to show.")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print the items as JSON.")] = False,
) -> None:
    """List the open review items with both agents side by side (the default action)."""
    if ctx.invoked_subcommand is not None:
        return
    from syncpipe.cli import render
    from syncpipe.cli.render_merge import review_table
    from syncpipe.services.merge.review import ReviewService

    app_ctx: AppContext = ctx.obj
    with cli_errors(app_ctx):
        items, total = ReviewService(app_ctx.db).open_items(limit)
        if json_out:
            render.print_json(
                app_ctx.out, {"open": total, "items": [item.to_dict() for item in items]}
            )
        else:
            review_table(app_ctx.out, items, total=total)


def _decide(ctx: typer.Context, ids: list[int], decision: str, by: str | None) -> None:
    from syncpipe.errors import EXIT_FAILED, JobFailedError
    from syncpipe.services.merge.review import ReviewService, default_reviewer

    app_ctx: AppContext = ctx.find_root().obj
    with cli_errors(app_ctx):
        service = ReviewService(app_ctx.db)
        failed = 0
        for review_id in ids:
            try:
                outcome = service.decide(review_id, decision, by or default_reviewer())
            except JobFailedError as exc:
                failed += 1
                app_ctx.console.print(f"[bold red]error[/]: {exc}", highlight=False)
                continue
            if decision == "accept":
                app_ctx.out.print(
                    f"Review item {review_id} accepted: agents {outcome.get('agent_id')} and "
                    f"{outcome.get('candidate_agent_id')} are now agent {outcome.get('survivor')}."
                )
            else:
                app_ctx.out.print(
                    f"Review item {review_id} rejected: agents {outcome.get('agent_id')} and "
                    f"{outcome.get('candidate_agent_id')} stay apart on every later merge."
                )
        if failed:
            raise typer.Exit(EXIT_FAILED)


@review_app.command()
def accept(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Review item ids.")],
    by: Annotated[str | None, _BY] = None,
) -> None:
    """Accept review items: the two agents of each become one (the lower id survives)."""
    _decide(ctx, ids, "accept", by)


@review_app.command()
def reject(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Review item ids.")],
    by: Annotated[str | None, _BY] = None,
) -> None:
    """Reject review items: the two agents stay apart, and the pair never comes back."""
    _decide(ctx, ids, "reject", by)


@review_app.command()
def walk(
    ctx: typer.Context,
    by: Annotated[str | None, _BY] = None,
) -> None:
    """Go through the open items one by one on a terminal: accept, reject, skip or quit."""
    from rich.prompt import Prompt

    from syncpipe.cli.render_merge import review_table
    from syncpipe.errors import ConfigError, JobFailedError
    from syncpipe.services.merge.review import ReviewService, default_reviewer

    app_ctx: AppContext = ctx.find_root().obj
    with cli_errors(app_ctx):
        if not app_ctx.console.is_terminal:
            raise ConfigError(
                "`syncpipe review walk` needs a terminal; use `syncpipe review accept ID` or "
                "`syncpipe review reject ID` in scripts."
            )
        service = ReviewService(app_ctx.db)
        who = by or default_reviewer()
        skipped: set[int] = set()
        decided = 0
        while True:
            items, total = service.open_items(limit=len(skipped) + 1)
            pending = [item for item in items if item.id not in skipped]
            if not pending:
                break
            item = pending[0]
            review_table(app_ctx.console, [item], total=total)
            answer = Prompt.ask(
                "[a]ccept, [r]eject, [s]kip, [q]uit",
                choices=["a", "r", "s", "q"],
                default="s",
                console=app_ctx.console,
            )
            if answer == "q":
                break
            if answer == "s":
                skipped.add(item.id)
                continue
            try:
                service.decide(item.id, "accept" if answer == "a" else "reject", who)
                decided += 1
            except JobFailedError as exc:
                app_ctx.console.print(f"[bold red]error[/]: {exc}", highlight=False)
                skipped.add(item.id)
        app_ctx.out.print(f"{decided} decision(s) recorded; {len(skipped)} item(s) skipped.")
