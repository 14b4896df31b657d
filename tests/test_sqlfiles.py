"""The SQL splitter: statements, line numbers, and refusing transaction control."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncpipe.core.errors import ConfigError, SqlFileError
from syncpipe.sqlfiles import KINDS, discover, read_sql_file, split_statements


def test_split_keeps_function_bodies_whole() -> None:
    """Semicolons inside dollar quotes, strings, identifiers and comments do not split."""
    text = """-- header; comment
CREATE TABLE "odd;name" (x text DEFAULT 'a;b');
/* block; /* nested; */ comment */
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
    RETURN 1; -- inside
END;
$body$;
SELECT E'it\\'s; fine', $$x;y$$;
"""
    stmts = split_statements(text)
    assert [s.line for s in stmts] == [2, 4, 9]
    assert stmts[1].text.startswith("CREATE FUNCTION") and stmts[1].text.endswith("$body$")
    assert "E'it\\'s; fine'" in stmts[2].text


def test_split_handles_begin_atomic_bodies() -> None:
    """A SQL-standard function body with inner semicolons stays one statement."""
    text = """CREATE FUNCTION g(a int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
    SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;
    SELECT 2;
END;
SELECT 3;"""
    stmts = split_statements(text)
    assert len(stmts) == 2
    assert stmts[0].text.endswith("END")
    assert stmts[1].line == 6


def test_statement_position_maps_to_file_line() -> None:
    """A server error position inside a statement becomes a file line."""
    stmt = split_statements("\n\nSELECT 1,\n  2,\n  oops;")[0]
    assert stmt.line == 3
    assert stmt.line_of(stmt.text.index("oops") + 1) == 5
    assert stmt.line_of(None) == 3


@pytest.mark.parametrize(
    ("statement", "label"),
    [
        ("COMMIT;", "COMMIT"),
        ("begin;", "BEGIN"),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE;", "START TRANSACTION"),
        ("ROLLBACK;", "ROLLBACK"),
        ("end;", "END"),
        ("CREATE INDEX CONCURRENTLY i ON t (x);", "CREATE INDEX CONCURRENTLY"),
        ("VACUUM t;", "VACUUM"),
    ],
)
def test_transaction_control_is_refused(tmp_path: Path, statement: str, label: str) -> None:
    """A file that would break the deploy's single transaction is refused with its line."""
    path = tmp_path / "010_bad.sql"
    path.write_text(f"CREATE TABLE a (x int);\n\n{statement}\n", encoding="utf-8")
    with pytest.raises(SqlFileError) as err:
        read_sql_file("ddl", path)
    assert err.value.line == 3
    assert label in str(err.value)
    assert "sql/ddl/010_bad.sql:3" in str(err.value)


def test_do_block_and_function_begin_are_accepted(tmp_path: Path) -> None:
    """BEGIN ... END inside a DO block or a function body is not transaction control."""
    path = tmp_path / "010_ok.sql"
    path.write_text(
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "CREATE FUNCTION h() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN NULL; END $f$;\n",
        encoding="utf-8",
    )
    assert len(read_sql_file("functions", path).statements) == 2


def test_non_utf8_file_names_line_and_column(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused with the line and column of the bad byte."""
    path = tmp_path / "010_latin1.sql"
    path.write_bytes(b"SELECT 1;\nSELECT 'caf\xe9';\n")
    with pytest.raises(
        SqlFileError, match=r"010_latin1.sql:2: is not UTF-8 text \(byte 0xE9 at column 12\)"
    ):
        read_sql_file("ddl", path)


def test_unclosed_quote_is_reported(tmp_path: Path) -> None:
    """An unterminated string names where it starts."""
    path = tmp_path / "010_open.sql"
    path.write_text("SELECT 1;\nSELECT 'open;\n", encoding="utf-8")
    with pytest.raises(SqlFileError, match=r":2: string starting here is never closed"):
        read_sql_file("ddl", path)


def test_psql_meta_commands_are_refused(tmp_path: Path) -> None:
    """psql backslash commands are not SQL and are named as such."""
    path = tmp_path / "010_psql.sql"
    path.write_text("\\i other.sql\n", encoding="utf-8")
    with pytest.raises(SqlFileError, match="psql meta-commands"):
        read_sql_file("ddl", path)


def test_discover_orders_by_kind_then_name(tmp_path: Path) -> None:
    """Folders in DESIGN order, files by name; a new file needs no code change."""
    for kind in reversed(KINDS):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "020_b.sql").write_text("SELECT 2;", encoding="utf-8")
        (tmp_path / kind / "010_a.sql").write_text("SELECT 1;", encoding="utf-8")
    (tmp_path / "ddl" / "notes.txt").write_text("ignored", encoding="utf-8")
    rels = [f.rel for f in discover(tmp_path)]
    assert rels == [f"{k}/{n}" for k in KINDS for n in ("010_a.sql", "020_b.sql")]


def test_discover_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    """A wrong SYNCPIPE_SQL_DIR is named."""
    with pytest.raises(ConfigError, match="SYNCPIPE_SQL_DIR"):
        discover(tmp_path / "nope")


def test_packaged_sql_is_found() -> None:
    """The shipped SQL is found without configuration."""
    files = discover()
    assert {f.kind for f in files} == set(KINDS)
