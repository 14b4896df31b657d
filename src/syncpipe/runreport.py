"""The run report: ``logs/deployment_report.json``, written after every deploy or full run.

Its shape is stable and versioned (``report_version``); the README documents it. Each step
records its status, its timing and its details (files applied, rows loaded, merge counts, ...).
The report is written even when a step fails, so it always tells what ran.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncpipe import __version__
from syncpipe.core.errors import SyncpipeError
from syncpipe.core.redact import redact, redact_value

REPORT_VERSION = 1
REPORT_FILE = "deployment_report.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Step:
    """One step of a run."""

    name: str
    status: str = "running"
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    duration_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of a step."""
        return {
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "details": self.details,
            "error": self.error,
        }


@dataclass
class RunReport:
    """Collects steps and writes the report file."""

    kind: str
    env: str
    #: the database the run was for (``host:port/db``, or the embedded server's folder)
    target: str = ""
    database: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=_now)
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Time a step; an exception marks it failed (and is re-raised)."""
        step = Step(name)
        self.steps.append(step)
        t0 = time.perf_counter()
        try:
            yield step
        except BaseException as exc:
            step.status = "failed"
            message = str(exc) if isinstance(exc, SyncpipeError) else f"{type(exc).__name__}: {exc}"
            step.error = redact(message) or type(exc).__name__
            self.errors.append(f"{name}: {step.error}")
            raise
        else:
            if step.status == "running":
                step.status = "success"
        finally:
            step.finished_at = _now()
            step.duration_s = round(time.perf_counter() - t0, 3)

    @property
    def status(self) -> str:
        """success when every step succeeded."""
        if any(s.status == "failed" for s in self.steps) or self.errors:
            return "failed"
        return "success"

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready data."""
        return {
            "report_version": REPORT_VERSION,
            "kind": self.kind,
            "tool_version": __version__,
            "env": self.env,
            "target": self.target,
            "database": self.database,
            "started_at": self.started_at,
            "finished_at": _now(),
            "duration_s": round(time.perf_counter() - self._t0, 3),
            "status": self.status,
            "steps": [s.to_dict() for s in self.steps],
            "errors": self.errors,
        }

    def write(self, logs_dir: Path) -> Path | None:
        """Write atomically to ``logs_dir/deployment_report.json``; None if it cannot be written."""
        path = logs_dir / REPORT_FILE
        data = redact_value(self.to_dict())
        try:
            logs_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=logs_dir, prefix=".report-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, default=str)
                fh.write("\n")
            os.replace(tmp, path)
        except OSError:
            return None
        return path
