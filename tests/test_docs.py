"""The docs cannot drift from the code.

* Every ``syncpipe ...`` line in a README.md code block and in every ``--help`` example runs,
  as written, against a test database holding the sample data after ``deploy --full``; it must
  exit as documented: 0, or the code a trailing ``# exit N`` comment states.
* ``.env.example`` lists exactly the settings ``Settings`` defines, each with its default.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncpipe.settings import Settings, env_var_name
from tests.conftest import ROOT, create_database, drop_database, dsn_for
from tests.helpers import Invoke

_DOCUMENTED_EXIT = re.compile(r"#\s*exit (\d)\b")


def _readme_lines() -> list[tuple[str, str]]:
    lines, fenced = [], False
    for number, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and line.strip().startswith("syncpipe "):
            lines.append((f"README.md:{number}", line.strip()))
    return lines


def _help_lines() -> list[tuple[str, str]]:
    import typer

    from syncpipe.cli import app

    found: list[tuple[str, str]] = []

    def walk(command: Any, path: str) -> None:
        for line in (command.help or "").splitlines():
            if line.strip().startswith("syncpipe "):
                found.append((f"{path} --help", line.strip()))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "syncpipe")
    return found


EXAMPLES = _readme_lines() + _help_lines()


def _parse(line: str) -> tuple[list[str], int]:
    """The arguments after ``syncpipe`` (up to a pipe or a comment) and the documented exit."""
    match = _DOCUMENTED_EXIT.search(line)
    code = int(match.group(1)) if match else 0
    words = shlex.split(line, comments=True)
    if "|" in words:
        words = words[: words.index("|")]
    assert words[0] == "syncpipe"
    return words[1:], code


def test_examples_are_found() -> None:
    """The collection itself works: the README and every command contribute examples."""
    sources = {where.split(":")[0].split(" --help")[0] for where, _ in EXAMPLES}
    assert "README.md" in sources
    for command in ("deploy", "load", "merge", "verify", "report", "review", "review walk"):
        assert f"syncpipe {command}" in sources, command


@pytest.fixture(scope="module")
def sample_template(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database after `syncpipe deploy --full` on the sample data in data/."""
    name = create_database(pg_server)
    folder = tmp_path_factory.mktemp("sample-run")
    shutil.copytree(ROOT / "data", folder / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCPIPE_")}
    env["SYNCPIPE_DATABASE_URL"] = dsn_for(pg_server, name)
    done = subprocess.run(
        [sys.executable, "-m", "syncpipe", "deploy", "--full"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    try:
        yield name
    finally:
        drop_database(pg_server, name)


@pytest.mark.parametrize(("where", "line"), EXAMPLES, ids=[f"{w}: {line}" for w, line in EXAMPLES])
def test_documented_command_runs_as_written(
    invoke: Invoke,
    pg_server: str,
    sample_template: str,
    tmp_path: Path,
    where: str,
    line: str,
) -> None:
    """Each documented invocation parses and exits as documented (its own database copy)."""
    args, code = _parse(line)
    name = create_database(pg_server, template=sample_template)
    try:
        dsn = dsn_for(pg_server, name)
        shutil.copytree(ROOT / "data", tmp_path / "data")
        _feed(ROOT / "data" / "new_agents.csv", tmp_path / "feed.csv")
        (tmp_path / ".env.staging").write_text(f"SYNCPIPE_DATABASE_URL={dsn}\n")
        if args[:2] == ["review", "walk"]:
            # a person at a terminal: here (no terminal) it must parse and say so, exit 2
            result = invoke(args, dsn=dsn, code=2)
            assert "needs a terminal" in result.stderr, where
            return
        result = invoke(args, dsn=dsn, code=None)
        assert result.exit_code == code, (
            f"{where}: `{line}` exited {result.exit_code}, documented {code}\n"
            f"--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-2000:]}"
        )
    finally:
        drop_database(pg_server, name)


def _feed(sample: Path, out: Path) -> None:
    """A feed file of new agents: the sample's rows under keys of their own (the sample's keys
    belong to the sample file, which the database loaded already)."""
    with (
        sample.open(encoding="utf-8", newline="") as src,
        out.open("w", encoding="utf-8", newline="") as dst,
    ):
        reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
        writer.writerow(next(reader))
        for row in reader:
            writer.writerow([str(uuid.uuid5(uuid.NAMESPACE_URL, row[0])), *row[1:]])


def _example_settings() -> dict[str, str]:
    values: dict[str, str] = {}
    pattern = re.compile(r"^#?\s*(SYNCPIPE_[A-Z0-9_]+)=(.*)$")
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = pattern.match(line)
        if match:
            assert match.group(1) not in values, f"{match.group(1)} listed twice"
            values[match.group(1)] = match.group(2).strip()
    return values


def test_env_example_lists_exactly_the_settings() -> None:
    """Every setting appears in .env.example, and nothing else does."""
    listed = set(_example_settings())
    defined = {env_var_name(name) for name in Settings.model_fields}
    assert listed - defined == set(), "in .env.example but not a setting"
    assert defined - listed == set(), "a setting missing from .env.example"


@pytest.mark.parametrize("variable", sorted(_example_settings()))
def test_env_example_shows_the_default(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The value shown in .env.example is the default (empty where the default is none)."""
    field = next(n for n in Settings.model_fields if env_var_name(n) == variable)
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    shown = _example_settings()[variable]
    if shown == "":
        assert default is None, f"{variable} is shown empty but defaults to {default!r}"
        return
    monkeypatch.setenv(variable, shown)
    value = getattr(Settings(_env_file=None), field)  # type: ignore[call-arg]
    assert value == default, f"{variable}={shown} in .env.example, default {default!r}"
    if isinstance(default, list | dict):
        assert json.loads(shown) == default
