"""``syncpipe merge``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def merge(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Do everything, show what would change, write nothing."),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write every proposed pair with its evidence to this CSV file.",
            dir_okay=False,
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            min=0,
            help="Pairs shown per rule and outcome: the borderline ones first, then a random "
            "pick across the range of evidence (default: 5 on a dry run, none on a real run, "
            "where reading every proposed pair costs seconds on a big first run).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the random pick (the same seed, the same pairs).")
    ] = 1,
    rescan: Annotated[
        bool,
        typer.Option(
            "--rescan",
            help="Read every source row and every team page, and match again every row "
            "written after its last match, not only the rows changed since the last complete "
            "run (for rows or pages written with the tables' triggers disabled, or with a "
            "changed_xid of their own).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the member pipeline and the merge batch: one atomic run, progress on a terminal.

    Source records new or changed since the last run are matched by the confidence ladder
    (email 100, phone 90, name and team 80: merged automatically; similar names 60: review
    queue). Existing agents keep their ids. Thresholds are settings (SYNCPIPE_MERGE_*).

    Example:
        syncpipe merge --dry-run
        syncpipe merge --dry-run --sample 10 --seed 7 --output pairs.csv
        syncpipe merge --json
    """
    from syncpipe.cli import render
    from syncpipe.cli.context import AppContext
    from syncpipe.cli.progress import phase_progress
    from syncpipe.cli.render_merge import merge_summary
    from syncpipe.services.merge.service import MergeService

    app_ctx: AppContext = ctx.obj
    render.check_output(output, "--output")
    service = MergeService(app_ctx.settings, app_ctx.db)
    label = "Planning the merge (dry run)" if dry_run else "Merging"
    with phase_progress(app_ctx, label) as phase:
        result = service.run(
            dry_run=dry_run,
            pairs_output=output,
            sample=(5 if dry_run else 0) if sample is None else sample,
            progress=phase,
            seed=seed,
            rescan=rescan,
        )
    if json_out:
        render.print_json(app_ctx.out, result.to_dict())
    else:
        merge_summary(app_ctx.out, result)
