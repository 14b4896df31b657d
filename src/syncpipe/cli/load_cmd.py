"""``syncpipe load``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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
    accept_rejects: Annotated[
        bool,
        typer.Option(
            "--accept-rejects",
            help="Accept the rejected rows of these files: exit 0, and later runs (deploy "
            "--full too) stop reporting them.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report; write nothing to the database.")
    ] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Encoding of the files (e.g. cp1252, latin-1).")
    ] = "utf-8",
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Tables loaded at once (default: setting)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load CSV files into their tables: parallel COPY streams, bad rows to a reject file.

    The table comes from the file name (new_agents*.csv, raw_company_info*.csv; setting
    SYNCPIPE_CSV_SOURCES). Each batch of SYNCPIPE_LOAD_BATCH_ROWS rows commits on its own, so
    an interrupted load (Ctrl-C: exit 130) resumes where it stopped. Loading the same file
    twice changes nothing; a changed version of it updates its rows. A key another file of
    the table loaded already is rejected, naming that file.
    Rejected rows go to a reject file in the rejects folder under SYNCPIPE_LOGS_DIR, with
    their line, column, value and reason; the exit code is then 1, on this run and the next
    ones, until the file changes or --accept-rejects accepts them.

    Example:
        syncpipe load data/
        syncpipe load feed.csv --table public.new_agents --dry-run
    """
    from syncpipe.cli import render
    from syncpipe.cli.context import AppContext
    from syncpipe.cli.progress import bytes_progress
    from syncpipe.core.errors import EXIT_FAILED, LockTimeoutError
    from syncpipe.services.load.loader import LoadService

    app_ctx: AppContext = ctx.obj
    settings = app_ctx.settings
    targets = paths or [settings.data_dir]
    if not paths and not settings.data_dir.exists():
        from syncpipe.core.errors import ConfigError

        raise ConfigError(
            f"The data folder {settings.data_dir} does not exist (setting SYNCPIPE_DATA_DIR, "
            "read when no file or folder is given)."
        )
    with bytes_progress(app_ctx, "Loading") as (advance, set_total):
        result = LoadService(settings, app_ctx.db).load(
            targets,
            table=table,
            force=force,
            dry_run=dry_run,
            accept_rejects=accept_rejects,
            encoding=encoding,
            jobs=jobs,
            progress=advance,
            on_total=set_total,
        )
    if json_out:
        render.print_json(app_ctx.out, result.to_dict())
    else:
        render.load_table(app_ctx.out, result)
        if any(f.rejected and not f.rejects_accepted for f in result.files):
            app_ctx.out.print(
                f"Rejected rows are listed in {result.reject_folder}; fix them and load "
                "again, or accept them with --accept-rejects.",
                markup=False,
                highlight=False,
            )
    if result.gave_up is not None:  # (after the result: the other files' outcome is news)
        raise LockTimeoutError(result.gave_up)
    if result.failed:
        raise typer.Exit(EXIT_FAILED)
