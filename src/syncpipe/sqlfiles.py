"""Find the SQL files to deploy, read them safely and split them into statements.

Files live in one folder per kind, applied in this order: ddl, functions, triggers, rls; inside a
folder, by file name. A new file needs no code change. The splitter understands quotes, quoted
identifiers, comments (nested block comments too), dollar quoting and ``BEGIN ATOMIC`` bodies, so
it can refuse transaction control (``BEGIN;``, ``COMMIT;`` ...) written at the top level of a file
while accepting the ``BEGIN ... END`` of a function body.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from syncpipe.core.errors import ConfigError, SqlFileError

KINDS: tuple[str, ...] = ("ddl", "functions", "triggers", "rls")

#: Statements that end, start or escape the deploy's single transaction.
_TRANSACTION_CONTROL = {
    ("begin",): "BEGIN",
    ("start", "transaction"): "START TRANSACTION",
    ("commit",): "COMMIT",
    ("end",): "END",
    ("rollback",): "ROLLBACK",
    ("abort",): "ABORT",
    ("savepoint",): "SAVEPOINT",
    ("release",): "RELEASE",
    ("prepare", "transaction"): "PREPARE TRANSACTION",
}
#: Statements PostgreSQL refuses to run inside a transaction block.
_NO_TRANSACTION = {
    ("vacuum",): "VACUUM",
    ("create", "database"): "CREATE DATABASE",
    ("drop", "database"): "DROP DATABASE",
    ("create", "tablespace"): "CREATE TABLESPACE",
    ("alter", "system"): "ALTER SYSTEM",
    ("create", "index", "concurrently"): "CREATE INDEX CONCURRENTLY",
    ("create", "unique", "index", "concurrently"): "CREATE UNIQUE INDEX CONCURRENTLY",
    ("drop", "index", "concurrently"): "DROP INDEX CONCURRENTLY",
    ("reindex",): "REINDEX",
}
_EXTENSION = re.compile(
    r"^\s*create\s+extension\s+(?:if\s+not\s+exists\s+)?(\"[^\"]+\"|[a-z_][a-z0-9_]*)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the file line it starts on (1-based)."""

    text: str
    line: int

    def line_of(self, position: int | None) -> int:
        """File line of a 1-based character position inside this statement (PostgreSQL's)."""
        if not position or position < 1:
            return self.line
        return self.line + self.text[: position - 1].count("\n")

    @property
    def extension(self) -> str | None:
        """The extension a ``CREATE EXTENSION`` statement installs, if it is one."""
        match = _EXTENSION.match(self.text)
        return match.group(1).strip('"').lower() if match else None


@dataclass(frozen=True)
class SqlFile:
    """A deployable SQL file: ``kind/name``, its checksum and its statements."""

    kind: str
    name: str
    path: Path
    sha256: str
    statements: tuple[Statement, ...] = field(repr=False)

    @property
    def rel(self) -> str:
        """The identity used in the ledger and in messages: ``kind/name``."""
        return f"{self.kind}/{self.name}"

    @property
    def display(self) -> str:
        """How messages name the file: ``sql/ddl/010_x.sql``."""
        return f"sql/{self.rel}"


def default_sql_dir() -> Path:
    """The SQL shipped with the package (a checkout's ``sql/`` in editable installs)."""
    packaged = Path(str(resources.files("syncpipe"))) / "sql"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "sql"
    return checkout


def discover(sql_dir: Path | None = None) -> list[SqlFile]:
    """Read every deployable file in order, refusing unreadable or transaction-breaking files."""
    root = sql_dir or default_sql_dir()
    if not root.is_dir():
        raise ConfigError(f"SQL folder {root} does not exist (setting SYNCPIPE_SQL_DIR).")
    files: list[SqlFile] = []
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.sql")):
            files.append(read_sql_file(kind, path))
    if not files:
        raise ConfigError(f"SQL folder {root} holds no .sql files under {', '.join(KINDS)}.")
    return files


def read_sql_file(kind: str, path: Path) -> SqlFile:
    """Read, decode and split one file; SqlFileError names the file and line of any problem."""
    display = f"sql/{kind}/{path.name}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SqlFileError(display, None, f"cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SqlFileError(
            display,
            line,
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02X} at column {column}); save it as UTF-8",
        ) from None
    text = text.removeprefix("\ufeff")
    statements = split_statements(text, display)
    for stmt in statements:
        _refuse_outside_transaction(stmt, display)
    return SqlFile(
        kind=kind,
        name=path.name,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        statements=tuple(statements),
    )


def _refuse_outside_transaction(stmt: Statement, display: str) -> None:
    words = tuple(w.lower() for w in re.findall(r"[A-Za-z_]+", _strip_leading_comments(stmt.text)))
    for table, why in (
        (_TRANSACTION_CONTROL, "controls the transaction"),
        (_NO_TRANSACTION, "cannot run inside a transaction"),
    ):
        for prefix, label in table.items():
            if words[: len(prefix)] == prefix:
                raise SqlFileError(
                    display,
                    stmt.line,
                    f"{label} {why}; syncpipe applies the whole deploy in one transaction, "
                    "so remove it from the file",
                )


def _strip_leading_comments(text: str) -> str:
    return re.sub(r"^(\s+|--[^\n]*\n?|/\*.*?\*/)*", "", text, flags=re.DOTALL)


_DOLLAR_TAG = re.compile(r"\$([^\W\d]\w*)?\$")


def _ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def split_statements(text: str, display: str = "<sql>") -> list[Statement]:
    """Split SQL text into statements at top-level semicolons."""
    out: list[Statement] = []
    i, n = 0, len(text)
    line = 1
    start: int | None = None  # index of the statement's first significant character
    start_line = 1
    words: list[str] = []  # leading words of the current statement (for BEGIN ATOMIC)
    atomic_depth = 0

    def flush(end: int) -> None:
        nonlocal start, words, atomic_depth
        if start is not None:
            body = text[start:end].strip()
            if body:
                out.append(Statement(body, start_line))
        start, words, atomic_depth = None, [], 0

    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            i, line = _skip_block_comment(text, i, line, display)
            continue
        if start is None:
            if ch == "\\":
                raise SqlFileError(
                    display, line, "psql meta-commands (lines starting with \\) are not SQL"
                )
            start, start_line = i, line
        if ch == ";" and atomic_depth == 0:
            flush(i)
            i += 1
            continue
        if ch == "'":
            escape = i > 0 and text[i - 1] in "eE" and (i < 2 or not _ident_char(text[i - 2]))
            i, line = _skip_quoted(text, i, line, "'", display, backslash=escape)
            continue
        if ch == '"':
            i, line = _skip_quoted(text, i, line, '"', display, backslash=False)
            continue
        if ch == "$":
            match = _DOLLAR_TAG.match(text, i)
            if match and not (i > 0 and _ident_char(text[i - 1])):
                tag = match.group(0)
                end = text.find(tag, match.end())
                if end < 0:
                    raise SqlFileError(display, line, f"dollar quote {tag} is never closed")
                line += text.count("\n", i, end + len(tag))
                i = end + len(tag)
                continue
            i += 1
            continue
        if _ident_start(ch):
            j = i + 1
            while j < n and _ident_char(text[j]):
                j += 1
            word = text[i:j].lower()
            if len(words) < 64:
                words.append(word)
            if words and words[0] == "create":
                if (word == "atomic" and len(words) >= 2 and words[-2] == "begin") or (
                    atomic_depth and word == "case"
                ):
                    atomic_depth += 1
                elif atomic_depth and word == "end":
                    atomic_depth -= 1
            i = j
            continue
        i += 1
    flush(n)
    return out


def _skip_block_comment(text: str, i: int, line: int, display: str) -> tuple[int, int]:
    depth, j, n = 0, i, len(text)
    start_line = line
    while j < n:
        if text.startswith("/*", j):
            depth += 1
            j += 2
        elif text.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j, line
        else:
            if text[j] == "\n":
                line += 1
            j += 1
    raise SqlFileError(display, start_line, "block comment /* is never closed")


def _skip_quoted(
    text: str, i: int, line: int, quote: str, display: str, *, backslash: bool
) -> tuple[int, int]:
    j, n = i + 1, len(text)
    start_line = line
    while j < n:
        ch = text[j]
        if ch == "\n":
            line += 1
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if j + 1 < n and text[j + 1] == quote:
                j += 2
                continue
            return j + 1, line
        j += 1
    what = "string" if quote == "'" else "quoted identifier"
    raise SqlFileError(display, start_line, f"{what} starting here is never closed")
