"""The one place where commands are registered. Command modules define plain functions and
never import this module back.

Heavy modules (psycopg, pydantic, structlog) are imported inside the commands so that
``syncpipe --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from syncpipe import __version__
from syncpipe.cli import (
    deploy_cmd,
    load_cmd,
    merge_cmd,
    report_cmd,
    review_cmd,
    verify_cmd,
)
from syncpipe.cli.globals import (
    GLOBAL_PANEL,
    GlobalOptionsCommand,
    GlobalOptionsGroup,
    LogFormat,
)

app = typer.Typer(
    name="syncpipe",
    help=(
        "Deploy a PostgreSQL/Supabase schema, load real-estate agent CSVs and resolve them into "
        "one master table of agents. Global options work before or after the command."
    ),
    cls=GlobalOptionsGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"syncpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            envvar="SYNCPIPE_ENV",
            show_envvar=True,
            help="Environment: reads .env.<env> over .env (default: dev).",
            rich_help_panel=GLOBAL_PANEL,
        ),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help=(
                "auto, console or json (default: SYNCPIPE_LOG_FORMAT; auto: console on a "
                "terminal, else json)."
            ),
            rich_help_panel=GLOBAL_PANEL,
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="More log detail; tracebacks.",
            rich_help_panel=GLOBAL_PANEL,
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Global options; settings and the database are only touched by a command."""
    from syncpipe.cli.context import AppContext

    app_ctx = AppContext(
        env=env,
        log_format=log_format.value if log_format else None,
        verbose=verbose,
        command=ctx.invoked_subcommand or "",
    )
    ctx.obj = app_ctx
    ctx.call_on_close(app_ctx.close)


def _register() -> None:
    command = app.command
    command(name="deploy", cls=GlobalOptionsCommand)(deploy_cmd.deploy)
    command(name="load", cls=GlobalOptionsCommand)(load_cmd.load)
    command(name="merge", cls=GlobalOptionsCommand)(merge_cmd.merge)
    review = typer.Typer(
        cls=GlobalOptionsGroup,
        help=review_cmd.REVIEW_HELP,
        no_args_is_help=False,
        invoke_without_command=True,
    )
    review.callback(invoke_without_command=True)(review_cmd.review)
    for name in ("accept", "reject", "walk"):
        review.command(name=name, cls=GlobalOptionsCommand)(getattr(review_cmd, name))
    app.add_typer(review, name="review")
    command(name="verify", cls=GlobalOptionsCommand)(verify_cmd.verify)
    command(name="report", cls=GlobalOptionsCommand)(report_cmd.report)


_register()


def main() -> None:
    """Console-script entry point."""
    from syncpipe.cli.errors import reader_gone, stdout_identity
    from syncpipe.core.errors import EXIT_FAILED, EXIT_READER_GONE, EXIT_USAGE

    if sys.stdout is None:  # (started with standard output closed: `syncpipe review >&-`)
        sys.stderr.write(
            "Error: standard output is closed, so the result could not be printed; redirect "
            "it to a file or to /dev/null.\n"
        )
        raise SystemExit(EXIT_USAGE)
    stdout_was = stdout_identity()
    try:
        app()
    except SystemExit as exc:
        # (Click and rich end with exit 1 when standard output's reader is gone while they
        # print, as for `syncpipe --help | head`: that is not a failed job)
        if exc.code == EXIT_FAILED and reader_gone(stdout_was):
            raise SystemExit(EXIT_READER_GONE) from None
        raise
