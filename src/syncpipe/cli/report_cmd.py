"""``syncpipe report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    ctx: typer.Context,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="table (default on a terminal), json (default otherwise) or html.",
            metavar="table|json|html",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file, in an existing folder (required for html).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Report the state of the database and of the last runs.

    Row counts, the confidence distribution of the master table, agents needing review and
    open review items, duplicate rate and links by rule, load speed, merge and pipeline
    durations, and the last run's pool use. HTML is one self-contained page with charts.

    Example:
        syncpipe report
        syncpipe report --format json | jq .agents
        syncpipe report --format html --output report.html
    """
    from syncpipe.cli.context import AppContext
    from syncpipe.cli.render import check_output
    from syncpipe.core.errors import ConfigError

    app_ctx: AppContext = ctx.obj
    check_output(output, "--output")
    chosen = fmt or ("table" if app_ctx.out.is_terminal and output is None else "json")
    if chosen not in ("table", "json", "html"):
        raise ConfigError(f"--format must be table, json or html, not {chosen!r}.")
    if chosen == "html" and output is None:
        raise ConfigError("--format html needs --output FILE (the page is one file).")
    from syncpipe.services.report import ReportService

    data = ReportService(app_ctx.settings, app_ctx.db).build()
    if chosen == "html":
        from syncpipe.cli.report_html import render_html

        text = render_html(data)
    elif chosen == "json":
        import json

        text = json.dumps(data.to_dict(), indent=2, default=str) + "\n"
    else:
        from syncpipe.cli.render_report import report_tables

        if output is None:
            report_tables(app_ctx.out, data)
            return
        from rich.console import Console

        with open(output, "w", encoding="utf-8") as handle:
            report_tables(Console(file=handle, width=120), data)
        return
    if output is None:
        from syncpipe.cli.render import write_all

        write_all(app_ctx.out.file, text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot write the report to {output}: {exc.strerror or exc}.") from None
    app_ctx.console.print(f"Report written to {output} ({len(text) / 1e6:.1f} MB).")
