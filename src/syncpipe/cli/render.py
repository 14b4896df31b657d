"""Render service results for people (rich tables) and machines (JSON on stdout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from syncpipe.services.deploy import DeployResult
    from syncpipe.services.load.loader import LoadResult
    from syncpipe.services.verify import VerifyResult

_STATUS_STYLE = {
    "new": "green",
    "changed": "yellow",
    "drifted": "yellow",
    "applied": "green",
    "unchanged": "dim",
    "refused": "bold red",
    "failed": "bold red",
    "pass": "green",
    "fail": "bold red",
    "warn": "yellow",
    "skip": "dim",
}


#: The most characters of one value a table shows (JSON and CSV outputs keep it whole).
CLIP = 120


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` cut for a table cell: a 5,000-character name took hundreds of lines."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text):,} characters)"


def print_json(out: Console, data: Any) -> None:
    """One JSON document on stdout."""
    write_all(out.file, json.dumps(data, indent=2, default=str) + "\n")


def write_all(stream: IO[str], text: str) -> None:
    """``text`` written whole, or an OSError (BrokenPipeError when the reader left). Under
    ``python -u`` / PYTHONUNBUFFERED, standard output's text layer writes straight to the file
    descriptor and drops what a pipe did not take in one write: the reader of ``| head -c 100``
    got 64 kB of a 1 MB document, and the command exited 0."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # (a StringIO, a test runner's capture)
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    data = memoryview(text.encode(getattr(stream, "encoding", None) or "utf-8", "replace"))
    while data:
        try:
            written = buffer.write(data)
        except BlockingIOError as exc:  # (a non-blocking pipe, full for now)
            written = exc.characters_written
        if not written:
            _wait_writable(stream)
            continue
        data = data[written:]
    while True:
        try:
            buffer.flush()
            return
        except BlockingIOError:
            _wait_writable(stream)


def _wait_writable(stream: IO[str]) -> None:
    """Until the reader takes more (a pipe set non-blocking by the parent: the loop spun)."""
    import select

    select.select([], [stream.fileno()], [], 1.0)


def deploy_table(out: Console, result: DeployResult) -> None:
    """Files with their status, then compat actions and a summary line."""
    from rich.table import Table

    title = "Deploy plan (nothing written)" if result.plan_only else "Deploy"
    table = Table(title=f"{title}: {result.target}", title_justify="left")
    table.add_column("File")
    table.add_column("Status")
    table.add_column("Why")
    table.add_column("ms", justify="right")
    for f in result.files:
        style = _STATUS_STYLE.get(f.status, "")
        ms = f"{f.duration_ms:.0f}" if f.duration_ms is not None else ""
        table.add_row(f"sql/{f.file}", f"[{style}]{f.status}[/]", f.reason, ms)
    out.print(table)
    for line in result.removed:
        out.print(
            f"[yellow]note:[/] {line} was applied earlier but is gone from sql/; "
            "its objects were left in place."
        )
    if result.compat:
        verb = "would" if result.plan_only else "did"
        out.print(f"Supabase compatibility ({verb}): " + "; ".join(result.compat) + ".")
    from rich.markup import escape

    for label in result.repaired:
        verb = "would rebuild" if result.plan_only else "rebuilt"
        out.print(f"[yellow]drift:[/] {verb} {escape(label)} from its recorded definition")
    for label in result.drift_refused:
        out.print(f"[bold red]drift:[/] {escape(label)}: deploy will not repair it")
    n = len(result.to_apply)
    if result.plan_only:
        out.print(f"{n} file(s) would be applied, {len(result.unchanged)} unchanged.")
    elif n == 0:
        out.print(
            f"Nothing to deploy: all {len(result.unchanged)} files are unchanged "
            f"({result.duration_s:.2f} s)."
        )
    else:
        out.print(
            f"Applied {n} file(s) (deploy #{result.deploy_id}), "
            f"{len(result.unchanged)} unchanged, in {result.duration_s:.2f} s."
        )


def verify_table(out: Console, result: VerifyResult, *, show_all: bool = False) -> None:
    """Problems (or every check with ``show_all``), one per line, and a summary line."""
    from rich.markup import escape

    rows = result.checks if show_all else result.problems
    if rows:
        out.print(f"Verify: {escape(result.target)}")
    for c in rows:
        style = _STATUS_STYLE.get(c.status, "")
        out.print(
            f"  [{style}]{c.status.upper():<4}[/] [dim]{c.category}/{c.check}[/] "
            f"{escape(c.object)}: {escape(c.message)}",
            highlight=False,
        )
        if c.remediation and c.status in ("fail", "warn"):
            out.print(
                f"       [dim]fix: {escape(c.remediation)}[/]", highlight=False, soft_wrap=True
            )
    s = result.summary()
    verdict = "[green]Verify passed[/]" if result.ok else "[bold red]Verify FAILED[/]"
    # (the database named on a pass too: with settings from several places, which one was
    # checked is worth seeing)
    where = "" if rows else f" on {escape(result.target)}"
    out.print(
        f"{verdict}{where}: {s['pass']} passed, {s['fail']} failed, {s['warn']} warning(s), "
        f"{s['skip']} skipped."
    )


def load_table(out: Console, result: LoadResult) -> None:
    """Per-file statistics, reject files and a summary line."""
    from rich.markup import escape
    from rich.table import Table

    title = "Load (dry run: nothing written)" if result.dry_run else "Load"
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("File", "left"),
        ("Table", "left"),
        ("Status", "left"),
        ("Read", "right"),
        ("Inserted", "right"),
        ("Updated", "right"),
        ("Unchanged", "right"),
        ("Rejected", "right"),
        ("Rows/s", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    styles = {
        "loaded": "green",
        "loaded_with_rejects": "yellow",
        "skipped": "dim",
        "failed": "bold red",
        "dry_run": "cyan",
    }
    for f in result.files:
        style = styles.get(f.status, "")
        table.add_row(
            escape(Path(f.path).name),
            f.table,
            f"[{style}]{f.status}[/]",
            f"{f.rows_read:,}",
            f"{f.inserted:,}",
            f"{f.updated:,}",
            f"{f.unchanged:,}",
            f"[yellow]{f.rejected:,}[/]" if f.rejected else "0",
            # (a resumed file's counts are the whole file's, its time this run's: no rate)
            f"{f.rows_per_s:,.0f}" if f.rows_read and not f.resumed_batches else "",
        )
    out.print(table)
    for f in result.files:
        if f.resumed_batches:
            out.print(
                f"[dim]note: {escape(f.path)}: resumed after the {f.resumed_batches:,} "
                "batch(es) an earlier run committed; its counts are the whole file's.[/]",
                highlight=False,
            )
        if f.message:
            level = "[bold red]error[/]" if f.status == "failed" else "[dim]note[/]"
            out.print(f"{level}: {escape(f.path)}: {escape(f.message)}", highlight=False)
        if f.rejected:
            reasons = ", ".join(
                f"{n} {escape(r)}"
                for r, n in sorted(f.rejected_by_reason.items(), key=lambda x: -x[1])
            )
            out.print(
                f"[yellow]rejected[/]: {escape(f.path)}: {f.rejected:,} row(s) ({reasons}); "
                f"see {escape(f.reject_file or '')}",
                highlight=False,
            )
    for path in result.skipped_paths:
        out.print(
            f"[dim]note: {escape(path)} matches no CSV source; not loaded.[/]", highlight=False
        )
    t = result.totals()
    verdict = "[bold red]Load finished with problems[/]" if result.failed else "[green]Load done[/]"
    out.print(
        f"{verdict}: {t['rows_read']:,} rows read, {t['inserted']:,} inserted, "
        f"{t['updated']:,} updated, {t['unchanged']:,} unchanged, {t['rejected']:,} "
        f"rejected, in {result.duration_s:.2f} s."
    )


def check_output(path: Path | None, option: str) -> None:
    """Refuse an output file whose folder does not exist (ConfigError, exit 2): nothing is
    created behind the user's back."""
    if path is None:
        return
    from syncpipe.core.errors import ConfigError

    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(
            f"{option} {path}: the folder {folder} "
            f"{'is not a folder' if folder.exists() else 'does not exist'}; create it first."
        )
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name.")
