"""The typed result of ``syncpipe verify``: one ``Check`` per thing verified, grouped.

Groups (``Check.category``): ``files`` (the deploy ledger), ``catalog`` (drift), ``security``
(Supabase's advisor lints and syncpipe's own), ``rls`` (behaviour tried as each API role).
A security finding carries the lint's name and level as Supabase's Security Advisor shows them
(``ERROR``, ``WARN``, ``INFO``), so a user can map one onto the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Status = Literal["pass", "fail", "warn", "info", "skip"]
Level = Literal["ERROR", "WARN", "INFO"]

#: How a lint's level decides a check's status.
STATUS_OF_LEVEL: dict[str, Status] = {"ERROR": "fail", "WARN": "warn", "INFO": "info"}


@dataclass
class Check:
    """One verification result."""

    category: str
    check: str
    object: str
    status: Status
    message: str
    remediation: str = ""
    expected: str | None = None
    actual: str | None = None
    #: Supabase's level for a security lint (ERROR / WARN / INFO); None for other checks.
    level: Level | None = None
    #: Supabase's lint number ("0013"), or None for syncpipe's own checks.
    lint: str | None = None


@dataclass
class VerifyResult:
    """All checks of one verify run."""

    env: str
    target: str
    checked_at: str
    deploy: dict[str, Any] | None
    checks: list[Check] = field(default_factory=list)
    fail_on: Literal["error", "warn"] = "error"

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Record a check."""
        self.checks.append(Check(*args, **kwargs))

    def count(self, status: Status) -> int:
        """How many checks have ``status``."""
        return sum(1 for c in self.checks if c.status == status)

    @property
    def ok(self) -> bool:
        """No failure (and no warning when failing on warnings)."""
        if self.count("fail"):
            return False
        return not (self.fail_on == "warn" and self.count("warn"))

    @property
    def problems(self) -> list[Check]:
        """Failures, then warnings."""
        order = {"fail": 0, "warn": 1}
        return sorted((c for c in self.checks if c.status in order), key=lambda c: order[c.status])

    def summary(self) -> dict[str, int]:
        """Counts by status."""
        return {s: self.count(s) for s in ("pass", "fail", "warn", "info", "skip")}

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``syncpipe verify --json``."""
        deploy = None
        if self.deploy:
            deploy = {
                k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.deploy.items()
            }
        return {
            "version": 1,
            "env": self.env,
            "target": self.target,
            "checked_at": self.checked_at,
            "ok": self.ok,
            "fail_on": self.fail_on,
            "summary": self.summary(),
            "deploy": deploy,
            "checks": [asdict(c) for c in self.checks],
        }
