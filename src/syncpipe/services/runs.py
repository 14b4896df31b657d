"""Runs that combine services and leave a report: deploy (+ verify), and the full run
(deploy, verify, load, member pipeline + merge, report)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from syncpipe.core.dsn import describe_dsn
from syncpipe.core.errors import JobFailedError
from syncpipe.core.redact import redact_value
from syncpipe.db.database import Database
from syncpipe.db.ledger import ensure_ledger, record_run
from syncpipe.logs import get_logger
from syncpipe.runreport import RunReport
from syncpipe.services.deploy import DeployResult, DeployService, ProgressFn
from syncpipe.services.verify import VerifyResult, VerifyService
from syncpipe.settings import Settings

if TYPE_CHECKING:
    from syncpipe.services.report import Report

log = get_logger(__name__)


@dataclass
class DeployRun:
    """A deploy, the verification after it, and where the report went."""

    deploy: DeployResult
    verify: VerifyResult | None
    report_path: Path | None


def target_of(db: Database) -> str:
    """The database a run is for, named without connecting (so a failed connection has one)."""
    if db.server_version:
        return db.target
    if db.settings.dsn:
        return describe_dsn(db.settings.dsn).target
    return f"the embedded PostgreSQL in {db.settings.embedded_data_dir}"


def store_report(db: Database, report: RunReport) -> None:
    """Keep the run report in the database's own ledger (``syncpipe report`` reads it there).

    Only when the run reached the database: a run that could not connect has its file only."""
    if not db.server_version:
        return
    import psycopg

    from syncpipe.core.errors import SyncpipeError

    try:
        with db.connection() as conn:
            ensure_ledger(conn)
            record_run(conn, redact_value(report.to_dict()))  # type: ignore[arg-type]
    except (SyncpipeError, psycopg.Error) as exc:
        log.warning("run.report_not_stored", target=db.target, error=str(exc))


def database_info(db: Database) -> dict[str, object]:
    """What reports say about the database (never the password), with the pool's peak use."""
    return {
        "target": db.target,
        "server_version": db.server_version,
        "embedded_data_dir": str(db.embedded_dir) if db.embedded_dir else None,
        "pool": {
            "min_size": db.settings.pool_min_size,
            "max_size": db.settings.pool_max_size,
            "peak_in_use": db.peak_pool_use,
        },
    }


def deploy_and_verify(
    settings: Settings,
    db: Database,
    *,
    verify: bool = True,
    progress: ProgressFn | None = None,
    report: RunReport | None = None,
) -> DeployRun:
    """Deploy, then verify, recording both as steps of a report written to ``logs/``."""
    own_report = report is None
    report = report or RunReport(kind="deploy", env=settings.env, target=target_of(db))
    report_path: Path | None = None
    verify_result: VerifyResult | None = None
    try:
        with report.step("deploy") as step:
            result = DeployService(settings, db).run(progress=progress)
            step.details = result.to_dict()
        report.database = database_info(db)
        if verify:
            with report.step("verify") as step:
                verify_result = VerifyService(settings, db).run()
                step.details = {
                    "ok": verify_result.ok,
                    "summary": verify_result.summary(),
                    "problems": [
                        {
                            "check": c.check,
                            "object": c.object,
                            "status": c.status,
                            "message": c.message,
                        }
                        for c in verify_result.problems
                    ],
                }
                if not verify_result.ok:
                    step.status = "failed"
                    report.errors.append("verify: the database does not match the deploy")
    finally:
        if own_report:
            report.target = target_of(db)
            report.database = database_info(db) if db.server_version else {"target": report.target}
            report_path = report.write(settings.logs_dir)
            store_report(db, report)
    return DeployRun(result, verify_result, report_path)


#: Called with (step, detail) as a full run moves on: "load", "new_agents.csv" ...
StepFn = Callable[[str, str], None]
#: Renders the report's data as an HTML page.
HtmlFn = Callable[["Report"], str]


@dataclass
class FullRun:
    """What ``deploy --full`` did, step by step (the report has the same)."""

    report: RunReport
    report_path: Path | None
    html_path: Path | None
    failed_step: str | None = None
    message: str | None = None
    #: the exit code the failure maps to (1 a step failed, 3 the database went away, ...)
    exit_code: int = 0


def full_run(
    settings: Settings,
    db: Database,
    *,
    on_step: StepFn | None = None,
    render_html: HtmlFn | None = None,
) -> FullRun:
    """The seed's deployment flow: deploy, verify, load the data folder, member pipeline and
    merge batch, report. Stops at the first failing step; the report records what ran.

    ``render_html`` turns the report's data into the HTML page (rendering belongs to the CLI);
    without it the report step records the data and writes no page."""
    from syncpipe.core.errors import (
        EXIT_FAILED,
        EXIT_UNAVAILABLE,
        LockTimeoutError,
        SyncpipeError,
    )
    from syncpipe.services.load.loader import LoadService
    from syncpipe.services.merge.service import MergeService

    def say(step: str, detail: str = "") -> None:
        # a step's start is news; its files and phases are detail (--verbose shows them)
        (log.debug if detail else log.info)("run.step", step=step, detail=detail)
        if on_step is not None:
            on_step(step, detail)

    report = RunReport(kind="full", env=settings.env, target=target_of(db))
    run = FullRun(report=report, report_path=None, html_path=None)
    try:
        say("deploy")
        deployed = deploy_and_verify(
            settings, db, progress=lambda done, total, name: say("deploy", name), report=report
        )
        if deployed.verify is not None and not deployed.verify.ok:
            failing = [c for c in deployed.verify.problems if c.status == "fail"]
            first = f"{failing[0].object}: {failing[0].message}" if failing else "see the report"
            raise _StepFailed(
                "verify", f"{len(failing)} check(s) failed, the first being {first}".rstrip(".")
            )

        say("load")
        say("load", str(settings.data_dir))
        with report.step("load") as step:
            if not settings.data_dir.is_dir():
                raise _StepFailed(
                    "load",
                    f"the data folder {settings.data_dir} "
                    f"{'is not a folder' if settings.data_dir.exists() else 'does not exist'} "
                    "(setting SYNCPIPE_DATA_DIR)",
                )
            loaded = LoadService(settings, db).load([settings.data_dir])
            step.details = loaded.to_dict()
            if loaded.gave_up is not None:
                raise LockTimeoutError(loaded.gave_up)
            if loaded.failed:
                t = loaded.totals()
                step.status = "failed"
                raise _StepFailed(
                    "load",
                    f"{t['rejected']:,} row(s) rejected or a file failed; the good rows are "
                    f"loaded and the rejects are in {loaded.reject_folder} (fix them, or "
                    "accept them with `syncpipe load --accept-rejects`)",
                )

        say("merge")
        with report.step("merge") as step:
            merged = MergeService(settings, db).run(sample=0, progress=lambda p: say("merge", p))
            step.details = merged.to_dict()

        say("report")
        with report.step("report") as step:
            from syncpipe.services.report import ReportService

            state = ReportService(settings, db).build()
            step.details = {"html": None, "agents": state.agents, "review": state.review}
            if render_html is not None:
                html_path = settings.logs_dir / "report.html"
                settings.logs_dir.mkdir(parents=True, exist_ok=True)
                html_path.write_text(render_html(state), encoding="utf-8")
                run.html_path = html_path
                step.details["html"] = str(html_path)
    except _StepFailed as exc:
        run.failed_step, run.message, run.exit_code = exc.step, exc.message, EXIT_FAILED
        if exc.message not in " ".join(report.errors):
            report.errors.append(f"{exc.step}: {exc.message}")
    except SyncpipeError as exc:
        failed = next((s.name for s in report.steps if s.status == "failed"), "run")
        run.failed_step, run.message = failed, str(exc)
        # a step that could not finish is a failed run (1); an unreachable database stays 3
        run.exit_code = exc.exit_code if exc.exit_code == EXIT_UNAVAILABLE else EXIT_FAILED
    finally:
        report.target = target_of(db)
        report.database = database_info(db) if db.server_version else {"target": report.target}
        run.report_path = report.write(settings.logs_dir)
        store_report(db, report)
    return run


class _StepFailed(JobFailedError):
    """A step ran and failed; its message is the reason (the report names the step)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
