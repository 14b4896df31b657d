"""``syncpipe deploy``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from syncpipe.cli.context import AppContext


def deploy(
    ctx: typer.Context,
    plan: Annotated[
        bool, typer.Option("--plan", help="Show what would be applied and why; write nothing.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip the verification after deploying.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="The whole job: deploy, verify, load the data folder (SYNCPIPE_DATA_DIR), "
            "member pipeline and merge, then the report (logs/report.html).",
        ),
    ] = False,
) -> None:
    """Deploy sql/ (DDL, functions, triggers, RLS) in one transaction, then verify.

    DDL files run once; function, trigger and RLS files are re-applied when they change.
    A failing file rolls everything back and is named as file:line. Writes
    logs/deployment_report.json. With --full, goes on to load, merge and report, stopping
    at the first failing step (exit 1); running it again after a failure or an interruption
    picks up where the data stands and duplicates nothing.

    Example:
        syncpipe deploy --env staging
        syncpipe deploy --plan
        syncpipe deploy --full
    """
    from syncpipe.cli import render
    from syncpipe.core.errors import EXIT_FAILED

    app_ctx: AppContext = ctx.obj
    if full and (plan or no_verify):
        raise typer.BadParameter(
            "--full always verifies and writes; it cannot be combined with --plan or --no-verify.",
            param_hint="--full",
        )
    settings = app_ctx.settings
    db = app_ctx.db
    if full:
        _full_run(app_ctx, json_out=json_out)
        return
    if plan:
        from syncpipe.services.deploy import DeployService

        result = DeployService(settings, db).run(plan_only=True)
        if json_out:
            render.print_json(app_ctx.out, result.to_dict())
        else:
            render.deploy_table(app_ctx.out, result)
        refused = [f for f in result.files if f.status == "refused"]
        if refused:
            app_ctx.console.print(
                f"[bold red]Error:[/] sql/{refused[0].file}: {refused[0].reason}."
            )
            raise typer.Exit(EXIT_FAILED)
        if result.drift_refused:
            app_ctx.console.print(
                "[bold red]Error:[/] deploy would refuse: the database drifted in a way it "
                "will not repair (listed above)."
            )
            raise typer.Exit(EXIT_FAILED)
        return

    from syncpipe.cli.progress import file_progress
    from syncpipe.services.runs import deploy_and_verify

    with file_progress(app_ctx, "Deploying") as progress:
        run = deploy_and_verify(settings, db, verify=not no_verify, progress=progress)
    if json_out:
        render.print_json(
            app_ctx.out,
            {
                "deploy": run.deploy.to_dict(),
                "verify": run.verify.to_dict() if run.verify else None,
                "report": str(run.report_path) if run.report_path else None,
            },
        )
    else:
        render.deploy_table(app_ctx.out, run.deploy)
        if run.verify is not None:
            render.verify_table(app_ctx.out, run.verify)
    if run.verify is not None and not run.verify.ok:
        raise typer.Exit(EXIT_FAILED)


def _full_run(app_ctx: AppContext, *, json_out: bool) -> None:
    from syncpipe.cli import render_run
    from syncpipe.cli.progress import phase_progress
    from syncpipe.cli.report_html import render_html
    from syncpipe.services.runs import full_run

    with phase_progress(app_ctx, "Full run") as phase:
        run = full_run(
            app_ctx.settings,
            app_ctx.db,
            on_step=lambda step, detail: phase(f"{step}: {detail}" if detail else step),
            render_html=render_html,
        )
    if json_out:
        from syncpipe.cli import render

        render.print_json(app_ctx.out, run.report.to_dict())
    else:
        render_run.full_run_table(app_ctx.out, run)
    if run.failed_step is not None:
        from rich.markup import escape

        app_ctx.console.print(
            f"[bold red]Error:[/] the full run stopped at {run.failed_step}: "
            f"{escape(run.message or 'failed')}"
        )
        raise typer.Exit(run.exit_code)
