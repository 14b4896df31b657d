"""``syncpipe verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def verify(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit",
            help="Also write JUnit XML to this file (in an existing folder); one failing test "
            "case when the database cannot be checked.",
            dir_okay=False,
            metavar="PATH",
        ),
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on", help="Exit 1 on 'error' (default) or also on 'warn'.", metavar="error|warn"
        ),
    ] = "error",
    show_all: Annotated[bool, typer.Option("--all", help="List passing checks too.")] = False,
) -> None:
    """Check the live database against sql/ and the last deploy; exit 1 if anything is wrong.

    Checks that every file is deployed and unchanged, that every table, column, index,
    function, trigger and policy exists and has not drifted, the Supabase security lints,
    and RLS behaviour as anon, authenticated and service_role.

    Example:
        syncpipe verify --json | jq .summary
        syncpipe verify --junit verify.xml
    """
    from syncpipe.cli import render
    from syncpipe.cli.context import AppContext
    from syncpipe.cli.junit import error_to_junit, verify_to_junit
    from syncpipe.core.errors import EXIT_FAILED, ConfigError, SyncpipeError
    from syncpipe.services.verify import VerifyService

    app_ctx: AppContext = ctx.obj
    if fail_on not in ("error", "warn"):
        raise typer.BadParameter("must be error or warn", param_hint="--fail-on")
    render.check_output(junit, "--junit")

    def write(text: str) -> None:
        if junit is None:
            return
        try:
            junit.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Cannot write --junit {junit}: {exc.strerror}.") from None

    try:
        result = VerifyService(app_ctx.settings, app_ctx.db).run(
            fail_on="warn" if fail_on == "warn" else "error"
        )
    except SyncpipeError as exc:
        # CI shows a failing test case, not nothing, when the database cannot be checked
        write(error_to_junit(app_ctx.env or "dev", exc))
        raise
    write(verify_to_junit(result))
    if json_out:
        render.print_json(app_ctx.out, result.to_dict())
    else:
        render.verify_table(app_ctx.out, result, show_all=show_all)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
