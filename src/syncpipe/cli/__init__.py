"""The ``syncpipe`` command line. Commands are thin: parse options, call a service, render.

Heavy modules (psycopg, pydantic, structlog) are imported inside the commands so that
``syncpipe --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from syncpipe import __version__

app = typer.Typer(
    name="syncpipe",
    help=(
        "Deploy a PostgreSQL/Supabase schema, load real-estate agent CSVs and resolve them into "
        "one master table of agents."
    ),
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
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="console or json (default: console on a terminal, else json).",
            metavar="console|json",
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log detail; tracebacks.")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Global options; settings and the database are only touched by a command."""
    if log_format not in (None, "console", "json"):
        raise typer.BadParameter("must be console or json", param_hint="--log-format")
    from syncpipe.cli.context import AppContext

    app_ctx = AppContext(env=env, log_format=log_format, verbose=verbose)
    app_ctx.command = ctx.invoked_subcommand or ""
    ctx.obj = app_ctx
    ctx.call_on_close(app_ctx.close)


from syncpipe.cli import (  # noqa: E402  (commands register)
    deploy_cmd,
    load_cmd,
    merge_cmd,
    report_cmd,
    review_cmd,
    verify_cmd,
)

__all__ = [
    "app",
    "deploy_cmd",
    "load_cmd",
    "main",
    "merge_cmd",
    "report_cmd",
    "review_cmd",
    "verify_cmd",
]


def main() -> None:
    """Console-script entry point."""
    app()
