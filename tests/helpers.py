"""Test helpers: run the real CLI and assert its contract (exit code, stdout, stderr)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner


@dataclass
class CliResult:
    """What a CLI run produced."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as one JSON document."""
        return json.loads(self.stdout)

    def log_events(self) -> list[dict[str, Any]]:
        """stderr parsed as JSON-lines log events (non-JSON lines skipped)."""
        events = []
        for line in self.stderr.splitlines():
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
        return events


Invoke = Callable[..., CliResult]


@pytest.fixture
def invoke() -> Invoke:
    """``invoke(args, code=0, dsn=None, env=None, input=None)`` runs ``syncpipe`` in-process."""
    from syncpipe.cli import app

    def run(
        args: list[str],
        *,
        code: int | None = 0,
        dsn: str | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> CliResult:
        environment = dict(env or {})
        if dsn is not None:
            environment["SYNCPIPE_DATABASE_URL"] = dsn
        runner = CliRunner()
        result = runner.invoke(app, args, env=environment, input=input, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        out = CliResult(result.exit_code, result.stdout, result.stderr)
        if code is not None:
            assert out.exit_code == code, (
                f"exit {out.exit_code} != {code}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
            )
        return out

    return run


def fetch(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run a query on its own connection and return all rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params)
        return cur.fetchall() if cur.description else []


def one(dsn: str, query: str, params: Any = None) -> Any:
    """The single value a query returns."""
    rows = fetch(dsn, query, params)
    assert len(rows) == 1, rows
    return rows[0][0]


def plans_of(dsn: str, statements: list[str]) -> list[str]:
    """Run ``statements`` on one connection and return the plan of every statement they ran,
    nested ones included, as auto_explain writes them (sent to this client as notices).
    Skips the test where the server has no auto_explain, or the role may not load it."""
    plans: list[str] = []
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute("LOAD 'auto_explain'")
        except psycopg.Error:
            pytest.skip("auto_explain cannot be loaded on this server")
        for setting, value in (
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_level", "notice"),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (setting, value))
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        for statement in statements:
            conn.execute(statement.encode())
    return plans


def plan_of(plans: list[str], statement: str) -> str:
    """The plan (from ``plans_of``) of the first statement that starts with ``statement``."""
    for plan in plans:
        if "Query Text: " + statement in plan:
            return plan
    raise AssertionError(f"no plan of a statement starting with {statement!r}")


def require_language(dsn: str, language: str) -> None:
    """Skip the test where the server cannot speak ``language`` (an ``lc_messages`` value): the
    locale must have been on the machine when the server started."""
    try:
        fetch(dsn, f"SET lc_messages = '{language}'")
    except psycopg.errors.InvalidParameterValue:
        pytest.skip(f"the server cannot speak {language} (no such locale when it started)")
