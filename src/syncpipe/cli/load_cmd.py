"""``syncpipe load``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncpipe.cli.errors import cli_errors


def load(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="CSV files or folders (default: the data folder setting).", show_default=False
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option("--table", "-t", help="Load every file into this table (schema.table)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Load files again even if already loaded.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report; write nothing to the database.")
    ] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Encoding of the files (e.g. cp1252, latin-1).")
    ] = "utf-8",
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Files loaded at once (default: setting)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load CSV files into their tables: streamed COPY, bad rows to a reject file.

    The table comes from the file name (new_agents*.csv, raw_company_info*.csv; setting
    SYNCPIPE_CSV_SOURCES). Loading the same file twice changes nothing. Rejected rows go to
    logs/rejects/ with their line, column and reason; the exit code is then 1.

    Example:
        syncpipe load data/
        syncpipe load feed.csv --table public.new_agents --dry-run
    """
    from syncpipe.cli import render
    from syncpipe.cli.context import AppContext
    from syncpipe.cli.progress import bytes_progress
    from syncpipe.core.errors import EXIT_FAILED
    from syncpipe.services.load.loader import LoadService

    app_ctx: AppContext = ctx.obj
    with cli_errors(app_ctx):
        settings = app_ctx.settings
        targets = paths or [settings.data_dir]
        with bytes_progress(app_ctx, "Loading") as (advance, set_total):
            result = LoadService(settings, app_ctx.db).load(
                targets,
                table=table,
                force=force,
                dry_run=dry_run,
                encoding=encoding,
                jobs=jobs,
                progress=advance,
                on_total=set_total,
            )
        if json_out:
            render.print_json(app_ctx.out, result.to_dict())
        else:
            render.load_table(app_ctx.out, result)
        if result.failed:
            raise typer.Exit(EXIT_FAILED)
