"""Settings precedence, validation and secret redaction, through the real CLI where it matters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncpipe.core.errors import ConfigError
from syncpipe.core.redact import redact
from syncpipe.settings import Settings, load_settings
from tests.helpers import Invoke


def test_precedence_env_var_then_env_file_then_dotenv_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SYNCPIPE_* beats .env.<env>, which beats .env, which beats the default."""
    (tmp_path / ".env").write_text(
        "SYNCPIPE_POOL_MAX_SIZE=4\nSYNCPIPE_LOAD_BATCH_ROWS=111\nSYNCPIPE_LOCK_TIMEOUT=7\n"
    )
    (tmp_path / ".env.staging").write_text("SYNCPIPE_POOL_MAX_SIZE=6\nSYNCPIPE_LOCK_TIMEOUT=8\n")
    monkeypatch.setenv("SYNCPIPE_LOCK_TIMEOUT", "9")
    settings = load_settings("staging")
    assert settings.lock_timeout == 9  # environment variable
    assert settings.pool_max_size == 6  # .env.staging over .env
    assert settings.load_batch_rows == 111  # .env
    assert settings.pool_min_size == 1  # default
    assert settings.env == "staging"
    assert load_settings().pool_max_size == 4  # dev reads .env only


def test_plain_database_url_is_accepted_and_prefixed_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE_URL works (Supabase naming); SYNCPIPE_DATABASE_URL wins when both are set."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h1:5432/a")
    assert load_settings().dsn == "postgresql://u@h1:5432/a"
    monkeypatch.setenv("SYNCPIPE_DATABASE_URL", "postgresql://u@h2:5432/b")
    assert load_settings().dsn == "postgresql://u@h2:5432/b"


def test_a_generic_database_url_never_beats_a_configured_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DATABASE_URL in the environment (a host sets it for every process) is the last
    resort: `--env staging` takes .env.staging's database, a file's DATABASE_URL counts at the
    file's rank, and an empty SYNCPIPE_DATABASE_URL (a missing CI secret) is no value. Each
    used to pick another database than the one configured, and say nothing."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@host-a:5432/a")
    (tmp_path / ".env.staging").write_text("SYNCPIPE_DATABASE_URL=postgresql://u@host-b:5432/b\n")
    (tmp_path / ".env").write_text("SYNCPIPE_DATABASE_URL=postgresql://u@host-c:5432/c\n")
    assert load_settings("staging").dsn == "postgresql://u@host-b:5432/b"
    assert load_settings().dsn == "postgresql://u@host-c:5432/c"
    (tmp_path / ".env.staging").write_text("DATABASE_URL=postgresql://u@host-b:5432/b\n")
    assert load_settings("staging").dsn == "postgresql://u@host-b:5432/b"
    (tmp_path / ".env").unlink()
    assert load_settings().dsn == "postgresql://u@host-a:5432/a"
    monkeypatch.setenv("SYNCPIPE_DATABASE_URL", "")
    assert load_settings().dsn == "postgresql://u@host-a:5432/a"
    monkeypatch.setenv("SYNCPIPE_DATABASE_URL", "postgresql://u@host-d:5432/d")
    assert load_settings("staging").dsn == "postgresql://u@host-d:5432/d"


def test_a_bad_database_url_in_a_file_is_named_with_its_file(
    invoke: Invoke, tmp_path: Path
) -> None:
    """The error names the variable and the file the bad value came from."""
    (tmp_path / ".env.staging").write_text("DATABASE_URL=mysql://u:pw@h/db\n")
    result = invoke(["--env", "staging", "verify"], code=2)
    assert f"Setting DATABASE_URL (in {tmp_path / '.env.staging'}) is invalid" in result.stderr
    assert "pw@" not in result.stderr


def test_a_line_of_a_dotenv_file_that_is_no_setting_is_an_error(
    invoke: Invoke, tmp_path: Path
) -> None:
    """`NAME: value` (YAML's way) used to be skipped with a warning of python-dotenv's, and the
    command ran on the embedded server; now it names the file and the line, exit 2."""
    (tmp_path / ".env.staging").write_text(
        "# staging\nSYNCPIPE_LOCK_TIMEOUT=5\nSYNCPIPE_DATABASE_URL: postgresql://u:pw@h:5432/db\n"
    )
    result = invoke(["--env", "staging", "verify"], code=2)
    assert f"Error: {tmp_path / '.env.staging'}, line 3, is not a NAME=value line" in result.stderr
    assert "pw@" not in result.stderr and "embedded" not in result.stderr


def test_env_example_uncommented_is_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every line of .env.example uncommented as it stands gives the defaults it claims: an
    empty value is no value (an empty SYNCPIPE_SQL_DIR used to be the current folder, an empty
    SYNCPIPE_LOGS_DIR wrote the logs there, an empty SYNCPIPE_DATA_DIR loaded every CSV under
    it)."""
    from tests.conftest import ROOT

    example = (ROOT / ".env.example").read_text()
    lines = [ln[2:] for ln in example.splitlines() if ln.startswith("# SYNCPIPE_")]
    assert any(ln.endswith("=") for ln in lines)  # the empty ones are what is checked
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    assert load_settings() == Settings()


@pytest.mark.parametrize("setting", ["SYNCPIPE_LOGS_DIR", "SYNCPIPE_EMBEDDED_DATA_DIR"])
def test_a_folder_setting_naming_a_file_is_a_bad_setting(
    invoke: Invoke, tmp_path: Path, setting: str
) -> None:
    """SYNCPIPE_LOGS_DIR naming a file failed a full run only at its report, after all its
    work (a plain deploy exited 0 without its report); SYNCPIPE_EMBEDDED_DATA_DIR printed
    initdb's output and exited 3."""
    (tmp_path / "afile").write_text("")
    result = invoke(["verify"], code=2, env={setting: "afile"})
    assert f"Setting {setting} is invalid (got 'afile'): afile is a file, not a folder." in (
        result.stderr
    )
    # (a folder under a file: found only when the full run's report was written)
    result = invoke(["verify"], code=2, env={setting: "afile/logs"})
    assert "(got 'afile/logs'): afile is a file, not a folder." in result.stderr


def test_a_bad_value_from_a_file_names_the_file_and_the_line(
    invoke: Invoke, tmp_path: Path
) -> None:
    """A bad value in .env did not say where it was; bad JSON named both files, or blamed the
    environment where the environment's value was good and the file's was not."""
    (tmp_path / ".env").write_text("SYNCPIPE_LOCK_TIMEOUT=5\nSYNCPIPE_POOL_MAX_SIZE=-4\n")
    result = invoke(["verify"], code=2)
    assert (
        f"Setting SYNCPIPE_POOL_MAX_SIZE (in {tmp_path / '.env'}, line 2) is invalid (got '-4')"
        in result.stderr
    )
    (tmp_path / ".env").write_text("SYNCPIPE_CSV_SOURCES={broken\n")
    (tmp_path / ".env.staging").write_text("SYNCPIPE_PIPELINE_STEPS=[x\n")
    result = invoke(["--env", "staging", "verify"], code=2)
    assert (
        f"Setting SYNCPIPE_PIPELINE_STEPS (in {tmp_path / '.env.staging'}, line 1) is not "
        "valid JSON" in result.stderr
    ) or f"SYNCPIPE_CSV_SOURCES (in {tmp_path / '.env'}, line 1)" in result.stderr
    result = invoke(
        ["verify"], code=2, env={"SYNCPIPE_CSV_SOURCES": '{"new_agents*.csv": "public.new_agents"}'}
    )
    assert f"SYNCPIPE_CSV_SOURCES (in {tmp_path / '.env'}, line 1) is not valid JSON" in (
        result.stderr
    )
    (tmp_path / ".env").unlink()
    result = invoke(["verify"], code=2, env={"SYNCPIPE_MERGE_WORK_MEM": "128mb"})
    assert "write a whole number and kB, MB or GB, as PostgreSQL does: 128MB." in result.stderr


def test_dotenv_lines_are_counted_and_variables_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke: Invoke
) -> None:
    """Blank lines before a setting were counted as its own (line 2 for line 3), and the
    database URL of a .env lost python-dotenv's ${VAR} expansion, which every other setting
    has."""
    (tmp_path / ".env").write_text("# Connections\n\nSYNCPIPE_POOL_MAX_SIZE=abc\n")
    assert f"{tmp_path / '.env'}, line 3)" in invoke(["verify"], code=2).stderr
    (tmp_path / ".env").write_text("SYNCPIPE_POOL_MAX_SIZE=3\r\n\r\n\r\nthis is junk\r\n")
    assert f"{tmp_path / '.env'}, line 4, is not" in invoke(["verify"], code=2).stderr
    monkeypatch.setenv("DBHOST", "db.example.internal")
    (tmp_path / ".env").write_text("SYNCPIPE_DATABASE_URL=postgresql://u@${DBHOST}:5432/app\n")
    assert load_settings().dsn == "postgresql://u@db.example.internal:5432/app"


def test_an_at_sign_in_the_password_is_refused_not_shown(invoke: Invoke) -> None:
    """libpq ends the password at its first "@": the rest became the host name and was printed
    (and logged) as one. Now a URL with two "@" is a bad setting that says how to write it."""
    result = invoke(
        ["verify"], code=2, env={"SYNCPIPE_DATABASE_URL": "postgresql://u:p@ssW0rdZ@h:5432/db"}
    )
    assert 'write an "@" in the user name or password as %40' in result.stderr
    assert "ssW0rdZ" not in result.stderr
    # (with a "?" or a "/" in the password too: the check passed, and the tail was shown)
    for url in ("postgresql://u:sec?r@tZq@h:5432/db", "postgresql://u:se/cr@tZq@h:5432/db"):
        said = invoke(["verify"], code=2, env={"SYNCPIPE_DATABASE_URL": url}).stderr
        assert "tZq" not in said and "'se'" not in said and "%40" in said


def test_syncpipe_env_in_dotenv_picks_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke: Invoke
) -> None:
    """.env.example lists SYNCPIPE_ENV among the settings; set in .env it was ignored, and the
    command ran on .env's database. --env and the variable still come first."""
    (tmp_path / ".env").write_text(
        "SYNCPIPE_ENV=staging\nSYNCPIPE_DATABASE_URL=postgresql://u@host-c:5432/c\n"
    )
    (tmp_path / ".env.staging").write_text("SYNCPIPE_DATABASE_URL=postgresql://u@host-b:5432/b\n")
    (tmp_path / ".env.prod").write_text("SYNCPIPE_DATABASE_URL=postgresql://u@host-p:5432/p\n")
    settings = load_settings()
    assert (settings.env, settings.dsn) == ("staging", "postgresql://u@host-b:5432/b")
    assert load_settings("prod").dsn == "postgresql://u@host-p:5432/p"
    result = invoke(["verify"], code=3, env={"SYNCPIPE_CONNECT_TIMEOUT": "1"})
    assert "host-b" in result.stderr


def test_unknown_env_is_a_config_error(tmp_path: Path) -> None:
    """--env without its .env file names the file and the known environments."""
    (tmp_path / ".env.prod").write_text("")
    with pytest.raises(
        ConfigError, match=r"Unknown environment 'staging'.*\.env\.staging.*dev, prod"
    ):
        load_settings("staging")


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"SYNCPIPE_POOL_MIN_SIZE": "5", "SYNCPIPE_POOL_MAX_SIZE": "2"},
            "SYNCPIPE_POOL_MAX_SIZE / SYNCPIPE_POOL_MIN_SIZE is invalid",
        ),
        ({"SYNCPIPE_POOL_MAX_SIZE": "lots"}, "SYNCPIPE_POOL_MAX_SIZE is invalid (got 'lots')"),
        ({"SYNCPIPE_DATABASE_URL": "mysql://u:pw@h/db"}, "SYNCPIPE_DATABASE_URL is invalid"),
        ({"DATABASE_URL": "mysql://u:pw@h/db"}, "Setting DATABASE_URL is invalid"),
        (
            {"SYNCPIPE_DATABASE_URL": "postgresql://u:pw@h:port/db"},
            "SYNCPIPE_DATABASE_URL is invalid",
        ),
        ({"SYNCPIPE_SSLMODE": "sometimes"}, "SYNCPIPE_SSLMODE is invalid"),
        # (quoted spaces named a folder of spaces)
        ({"SYNCPIPE_LOGS_DIR": "  "}, "SYNCPIPE_LOGS_DIR is invalid (got '  '): is blank"),
        # (was an internal error: a float infinity has no integer)
        ({"SYNCPIPE_CONNECT_TIMEOUT": "inf"}, "SYNCPIPE_CONNECT_TIMEOUT is invalid (got 'inf')"),
        ({"SYNCPIPE_CONNECT_TIMEOUT": "1e12"}, "less than or equal to 2147483"),
        # (the server refused these with a raw error, exit 1)
        (
            {"SYNCPIPE_MERGE_WORK_MEM": "5000GB"},
            "SYNCPIPE_MERGE_WORK_MEM is invalid (got '5000GB')",
        ),
        (
            {"SYNCPIPE_API_ALLOWED_FUNCTIONS": '["x; drop"]'},
            "'x; drop' is not a SQL function name",
        ),
        (
            {"SYNCPIPE_DATABASE_URL": "postgresql://u:pw@127.0.0.1:99999/db"},
            'invalid port number: "99999"',
        ),
    ],
)
def test_bad_settings_exit_2_with_one_sentence(
    invoke: Invoke, variables: dict[str, str], expected: str
) -> None:
    """Each bad setting is one sentence naming it, exit 2, and no secret in the output."""
    result = invoke(["verify"], code=2, env=variables)
    assert expected in result.stderr.replace("\n", " ")
    assert "pw@" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("seconds", ["inf", "1e10", "-0"])
def test_statement_timeout_beyond_postgres_range_is_its_largest(
    invoke: Invoke, deployed_db: str, seconds: str
) -> None:
    """SYNCPIPE_STATEMENT_TIMEOUT=inf, or more than PostgreSQL's largest (about 24.8 days), is
    that largest, not an internal error or a rejected setting; -0 is 0 (no limit)."""
    result = invoke(
        ["report", "--format", "json"], dsn=deployed_db, env={"SYNCPIPE_STATEMENT_TIMEOUT": seconds}
    )
    assert json.loads(result.stdout)["report_version"] == 1


def test_a_positive_timeout_never_becomes_no_limit() -> None:
    """Below a millisecond a timeout is 1 ms (PostgreSQL's 0 would mean no limit); -0 is 0."""
    from syncpipe.core.timeouts import MAX_TIMEOUT_MS, postgres_ms
    from syncpipe.db.locks import lock_timeout_setting

    assert postgres_ms(0.0001) == 1
    assert postgres_ms(0) == 0
    assert postgres_ms(float("inf")) == MAX_TIMEOUT_MS
    assert lock_timeout_setting(0) == "1ms"
    assert f"{Settings(lock_timeout='-0').lock_timeout:g}" == "0"  # type: ignore[arg-type]


def test_unknown_env_via_cli_exits_2(invoke: Invoke) -> None:
    """The CLI turns an unknown --env into exit 2."""
    result = invoke(["--env", "nowhere", "verify"], code=2)
    assert "Unknown environment 'nowhere'" in result.stderr


def test_redact_masks_url_and_keyword_passwords() -> None:
    """Passwords in URLs and key=value strings are masked."""
    assert redact("postgresql://bob:hunter22@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("host=db password=hunter22 user=bob") == "host=db password=*** user=bob"
    assert redact("nothing secret") == "nothing secret"


def test_unreachable_server_exits_3_naming_host_and_port_not_password(invoke: Invoke) -> None:
    """A server that does not answer: one sentence with host and port, no password, exit 3."""
    dsn = "postgresql://postgres:Sup3rSecret@127.0.0.1:1/postgres"
    result = invoke(["verify"], code=3, dsn=dsn)
    assert "127.0.0.1:1" in result.stderr
    assert "connection refused" in result.stderr
    assert "Sup3rSecret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    logs = Path("logs")
    for path in logs.glob("*"):
        assert "Sup3rSecret" not in path.read_text()


def test_verbose_shows_traceback_but_still_no_password(invoke: Invoke) -> None:
    """--verbose adds the traceback, still redacted."""
    dsn = "postgresql://postgres:Sup3rSecret@127.0.0.1:1/postgres"
    result = invoke(["-v", "verify"], code=3, dsn=dsn)
    assert "Traceback" in result.stderr
    assert "Sup3rSecret" not in result.stderr


def test_missing_database_is_named(invoke: Invoke, pg_server: str) -> None:
    """A database that does not exist is named, exit 3."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(pg_server)
    params["dbname"] = "syncpipe_no_such_db"
    result = invoke(["verify"], code=3, dsn=make_conninfo(**params))
    assert 'the database "syncpipe_no_such_db" does not exist' in result.stderr


def test_wrong_password_message() -> None:
    """A refused password becomes one clear sentence naming the user (server message mapped)."""
    import psycopg

    from syncpipe.db.database import Database
    from syncpipe.settings import Settings

    settings = Settings(_env_file=None, database_url="postgresql://alice:pw@db.example:5433/app")  # type: ignore[call-arg]
    exc = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.1", port 5433 failed: '
        'FATAL:  password authentication failed for user "alice"'
    )
    message = str(Database(settings)._explain(exc))
    assert message == (
        "Cannot connect to PostgreSQL at db.example:5433/app as alice: "
        'password authentication failed for user "alice".'
    )


def test_logs_are_json_when_not_a_terminal(invoke: Invoke) -> None:
    """Under a pipe (the test runner), stderr logs are JSON lines; the error is still one line."""
    result = invoke(["verify"], code=3, dsn="postgresql://postgres@127.0.0.1:1/postgres")
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("{")]
    for line in lines:
        assert "event" in json.loads(line)
    assert result.stderr.strip().splitlines()[-1].startswith("Error:")


def test_empty_sslmode_as_in_env_example_is_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.env.example`'s `SYNCPIPE_SSLMODE=` uncommented means libpq's default, as it says."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SYNCPIPE_SSLMODE=\n")
    assert load_settings().sslmode is None
