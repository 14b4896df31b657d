"""What a CSV file must look like for its target table, and which table a file goes to.

The mapping from file names to tables is a setting (``SYNCPIPE_CSV_SOURCES``), so a new source
is one more entry, no code. The columns, types, NOT NULLs and primary key come from the
database catalog; the two documented formats (DESIGN.md) add the exact header and the JSON
shapes that give rejected rows a clear reason.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from syncpipe.core.errors import ConfigError, NotDeployedError
from syncpipe.db.queries import name_parts, qualified

Shape = Literal["array_of_strings", "array", "object"]
#: Values the merge indexes (team ids, e-mails), so their length is limited
#: (``records.MAX_KEY_CHARS``): a text column, the strings of a JSON array, or the e-mail
#: strings of member objects.
Limit = Literal["text", "strings", "members"]


@dataclass(frozen=True)
class SourceFormat:
    """The documented CSV format of a table: its exact columns and JSON shapes."""

    columns: tuple[str, ...]
    shapes: dict[str, Shape] = field(default_factory=dict)
    limits: dict[str, Limit] = field(default_factory=dict)


#: The formats DESIGN.md documents. Tables without one accept any of their columns.
KNOWN_FORMATS: dict[str, SourceFormat] = {
    "public.new_agents": SourceFormat(
        columns=(
            "supabase_uuid",
            "full_name",
            "email_clean",
            "phone_digits",
            "team_id",
            "social_links",
        ),
        shapes={
            "email_clean": "array_of_strings",
            "phone_digits": "array_of_strings",
            "social_links": "object",
        },
        limits={"team_id": "text", "email_clean": "strings"},
    ),
    "bronze.company_info_raw": SourceFormat(
        columns=("research_uuid", "team_id", "website", "team_members"),
        shapes={"team_members": "array"},
        limits={"team_id": "text", "team_members": "members"},
    ),
}


@dataclass(frozen=True)
class Column:
    """A column of the target table as the catalog describes it."""

    name: str
    type_name: str  # format_type() of the column, e.g. "uuid", "jsonb", "text"
    not_null: bool
    has_default: bool


@dataclass(frozen=True)
class TableSpec:
    """The target table: columns, primary key and the documented format if any."""

    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    fmt: SourceFormat | None
    #: columns a row loaded again is compared on by their text: a type with no equality
    #: (json, xml, point), an array, a composite, a geometric type (``_by_text``)
    by_text: frozenset[str] = frozenset()
    #: a partitioned table: its rows' system columns cannot be RETURNING'ed by a write
    partitioned: bool = False
    #: a key whose equal values can be spelled differently ("3.5" and "3.50" in a numeric, two
    #: cases in a case-insensitive column): a reload remembers such keys as the table spells
    #: them (``_key_kinds``)
    spelled_key: bool = True
    #: a BEFORE INSERT row trigger may skip a row (return NULL): COPY's count leaves it out,
    #: so a batch's records are counted from the file (``_skips_rows``)
    skips_rows: bool = False
    #: a key whose equal values Python can tell from a file's text exactly (``_key_kinds``):
    #: a repeated key's first row is then found without the server
    plain_key: bool = False

    @property
    def loadable(self) -> list[str]:
        """Columns a CSV may carry."""
        if self.fmt:
            return list(self.fmt.columns)
        return list(self.columns)

    @property
    def required(self) -> list[str]:
        """Columns a CSV header must have."""
        if self.fmt:
            return list(self.fmt.columns)
        needed = [c.name for c in self.columns.values() if c.not_null and not c.has_default]
        return sorted(set(needed) | set(self.primary_key), key=list(self.columns).index)

    def shape(self, column: str) -> Shape | None:
        """The JSON shape a column must have, if documented."""
        return self.fmt.shapes.get(column) if self.fmt else None

    def limit(self, column: str) -> Limit | None:
        """How the column's length is limited, if it is."""
        return self.fmt.limits.get(column) if self.fmt else None


def _find_table(conn: psycopg.Connection[Any], table: str) -> tuple[int, str, bool] | None:
    """The oid and the SQL name of a table as SQL reads the name given, and whether it is
    partitioned; or None.

    SQL folds unquoted names to lower case, so ``PUBLIC.NEW_AGENTS`` is ``public.new_agents``,
    and ``"People"`` is not ``people``: the name returned is the catalog's, quoted where it
    must be (``public."People"``), so that it reads back as the same table. Not a name at
    all, or a view, an index...: ConfigError (exit 2).
    """
    if len(name_parts(table)) == 1:  # (a dot inside quotes is part of the name)
        table = f"public.{table}"
    try:
        with conn.transaction():  # (a savepoint inside a transaction)
            row = conn.execute(
                """
                SELECT c.oid, c.relkind, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.oid = to_regclass(%s)
                """,
                (table,),
            ).fetchone()
    except (
        psycopg.errors.InvalidName,
        psycopg.errors.SyntaxError,  # (a.b.c.d)
        psycopg.errors.FeatureNotSupported,  # (another_database.schema.table)
    ):
        raise ConfigError(
            f"{table!r} is not a table name (schema.table; check --table or SYNCPIPE_CSV_SOURCES)."
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:  # (no USAGE on its schema)
        reason = (exc.diag.message_primary or "permission denied").rstrip(".")
        raise ConfigError(
            f"The role {conn.info.user} may not look up {table}: {reason}; grant it USAGE on "
            "the schema, or load as the role that deployed syncpipe."
        ) from None
    if row is None:
        return None
    if row[1] not in ("r", "p"):
        kinds = {
            "v": "a view",
            "m": "a materialized view",
            "i": "an index",
            "I": "an index",
            "S": "a sequence",
            "f": "a foreign table",
            "c": "a composite type",
        }
        what = kinds.get(row[1], "something else")
        raise ConfigError(
            f"{row[2]} is {what}, not a table: a load writes into a table (check --table or "
            "SYNCPIPE_CSV_SOURCES)."
        )
    return int(row[0]), str(row[2]), row[1] == "p"


def canonical_table(conn: psycopg.Connection[Any], table: str) -> str:
    """``table`` as the catalog spells it (``schema.table``); as given if there is no such
    table (``read_table_spec`` then says so, for each file)."""
    try:
        found = _find_table(conn, table)
    except ConfigError:  # (said for each of its files by read_table_spec)
        found = None
    if found is not None:
        return found[1]
    return table if len(name_parts(table)) > 1 else f"public.{table}"


def read_table_spec(conn: psycopg.Connection[Any], table: str) -> TableSpec:
    """Read columns and primary key of ``schema.table`` from the catalog."""
    if len(name_parts(table)) == 1:
        table = f"public.{table}"
    row = _find_table(conn, table)
    if row is None:
        if table in KNOWN_FORMATS:
            raise NotDeployedError(
                f"Table {table} does not exist in this database; run `syncpipe deploy` first."
            )
        raise ConfigError(f"Table {table} does not exist (check --table or SYNCPIPE_CSV_SOURCES).")
    oid, table, partitioned = row
    cols = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
        FROM pg_attribute a
        WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY a.attnum
        """,
        (oid,),
    ).fetchall()
    pk = conn.execute(
        """
        SELECT a.attname FROM pg_index i
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n
        """,
        (oid,),
    ).fetchall()
    columns = {str(n): Column(str(n), str(t), bool(nn), bool(d)) for n, t, nn, d in cols}
    spelled, plain = _key_kinds(conn, oid, [str(r[0]) for r in pk])
    if not pk:
        raise ConfigError(
            f"Table {table} has no primary key; syncpipe needs one to load idempotently."
        )
    return TableSpec(
        name=table,
        columns=columns,
        primary_key=tuple(str(r[0]) for r in pk),
        fmt=KNOWN_FORMATS.get(table),
        by_text=_by_text(conn, table, list(columns)),
        partitioned=partitioned,
        spelled_key=spelled,
        plain_key=plain,
        skips_rows=_skips_rows(conn, oid),
    )


#: Types whose equal values have one text only (with a deterministic collation), by
#: ``pg_type.typname``: a key of these is the same key exactly when its text is the same.
_ONE_SPELLING = frozenset(
    ("int2", "int4", "int8", "text", "varchar", "uuid", "date", "bool", "bytea", "oid")
)
#: Types whose equality Python can judge on a file's text exactly (``dupes.key_text``):
#: integers, numbers (rounded to the column's scale) and UUIDs by value, text by its
#: characters (with a deterministic collation). Not varchar(n): it cuts trailing spaces
#: past its length ("abc  " is "abc" in a varchar(3)).
_PLAIN = frozenset(("int2", "int4", "int8", "text", "uuid", "numeric"))


def _key_kinds(conn: psycopg.Connection[Any], oid: int, key: list[str]) -> tuple[bool, bool]:
    """(spelled, plain) of a key: spelled where a key column's equal values may be spelled
    differently (a type not known to have one text per value: numeric, citext, a timestamp
    with time zone, a domain...; or a nondeterministic collation); plain where Python can
    tell two of the file's keys equal as the table would (``_PLAIN``)."""
    rows = conn.execute(
        """
        SELECT t.typname, coalesce(c.collisdeterministic, true)
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_collation c ON c.oid = a.attcollation
        WHERE a.attrelid = %s AND a.attname = ANY(%s)
        """,
        (oid, key),
    ).fetchall()
    whole = len(rows) == len(key)
    one = whole and all(str(t) in _ONE_SPELLING and det for t, det in rows)
    plain = whole and all(str(t) in _PLAIN and det for t, det in rows)
    return not one, plain


def _skips_rows(conn: psycopg.Connection[Any], oid: int) -> bool:
    """True where the table, or a partition of it, has an enabled BEFORE INSERT row trigger
    of its own (one may return NULL, and its row is not written)."""
    row = conn.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_trigger t
            WHERE (t.tgrelid = %s OR t.tgrelid IN (SELECT relid FROM pg_partition_tree(%s)))
              AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgtype & 7 = 7
        )
        """,
        (oid, oid),
    ).fetchone()
    return bool(row and row[0])


def _by_text(conn: psycopg.Connection[Any], table: str, columns: list[str]) -> frozenset[str]:
    """The columns whose values ``IS DISTINCT FROM`` cannot compare, or not as a load means
    it, so compared on their text: a type with no ``=`` (json, xml, point), as the server
    resolves it (all at once, then one by one if that fails; a probe the role may not run
    names nothing, the load then says why); an array or a composite (their ``=`` is looked up
    for their elements only when two values meet: ``json[]`` fails then); a geometric type
    (``=`` of two boxes or circles compares their areas)."""
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND (b.typcategory IN ('A', 'G') OR b.typtype = 'c')
        """,
        (table,),
    ).fetchall()
    by_text = {str(r[0]) for r in rows}

    def resolves(names: list[str]) -> bool:
        probe = sql.SQL("SELECT {} FROM {} t LIMIT 0").format(
            sql.SQL(", ").join(
                sql.SQL("t.{c} IS DISTINCT FROM t.{c}").format(c=sql.Identifier(n)) for n in names
            ),
            qualified(table),
        )
        try:
            with conn.transaction():
                conn.execute(probe)
        except psycopg.errors.UndefinedFunction:
            return False
        except psycopg.Error:
            return True
        return True

    rest = [c for c in columns if c not in by_text]
    if rest and not resolves(rest):
        by_text.update(c for c in rest if not resolves([c]))
    return frozenset(by_text)


def table_for(path: Path, sources: dict[str, str]) -> str | None:
    """The table a file name maps to (first matching pattern), or None."""
    for pattern, table in sources.items():
        if fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(path.name.lower(), pattern):
            return table
    return None


@dataclass
class Selection:
    """The files a load takes, with their tables, and the paths it leaves out."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    not_matched: list[Path] = field(default_factory=list)
    #: symbolic links to files outside their folder: never opened, reported as failed
    refused: list[tuple[Path, str, str]] = field(default_factory=list)


def _outside(path: Path, folder: Path) -> bool:
    """True when ``path`` resolves (through symbolic links) to a place outside ``folder``."""
    return not _resolved(path).is_relative_to(folder.resolve())


def expand_paths(
    paths: list[Path], sources: dict[str, str], table: str | None, own: Path | None = None
) -> Selection:
    """Files (from files and folders) with their tables, and the files left out.

    A folder's files under ``own`` (syncpipe's logs folder: its reject files are named after
    the files they come from, and would match their patterns) are not read.

    A missing path is a ConfigError (exit 2). A file named explicitly that matches no pattern
    is an error unless ``table`` is given; a folder's other files are just skipped. A symbolic
    link that leads out of its folder (the folder given, or the named file's own folder) is
    refused, never followed: the load must not read, or quote, a file nobody meant to give it.
    """
    selection = Selection()
    chosen: list[tuple[Path, str]] = []
    ours = own.resolve() if own is not None else None
    for path in paths:
        try:
            found = path.exists() or path.is_symlink()
        except OSError as exc:  # (a folder on the way that cannot be read)
            raise ConfigError(f"{path} cannot be read: {exc.strerror}.") from None
        if not found:
            raise ConfigError(f"{path} does not exist.")
        if path.is_dir():
            for child in _files_under(path):
                if child.name.startswith(".") or (
                    ours is not None and _resolved(child).is_relative_to(ours)
                ):
                    continue
                target = table or table_for(child, sources)
                if table and child.suffix.lower() != ".csv":
                    target = None
                if not target:
                    selection.not_matched.append(child)
                elif not child.exists():  # (a link to nothing, or a loop of links)
                    selection.refused.append((child, target, _NOWHERE))
                elif _outside(child, path):
                    selection.refused.append((child, target, _refusal(path)))
                elif child.is_file():
                    chosen.append((child, target))
            continue
        if path.is_symlink() and not path.exists():
            raise ConfigError(f"{path} {_NOWHERE}.")
        if not path.is_file():
            # (a pipe, as from `<(...)`, or a device: the load reads a file twice, to hash it
            # and to resume, and a pipe without a writer would wait for ever)
            raise ConfigError(
                f"{path} is not a regular file (a pipe or a device): save it to a file and "
                "load that."
            )
        target = table or table_for(path, sources)
        if target is None:
            patterns = ", ".join(f"{p} -> {t}" for p, t in sources.items())
            raise ConfigError(
                f"{path.name} matches no CSV source ({patterns}); rename it or pass --table."
            )
        if path.is_symlink() and _outside(path, path.parent):
            selection.refused.append((path, target, _refusal(path.parent)))
            continue
        chosen.append((path, target))
    seen: set[Path] = set()
    for item in chosen:
        resolved = item[0].resolve()
        if resolved not in seen:
            seen.add(resolved)
            selection.files.append(item)
    return selection


#: Why a symbolic link of the files given is not loaded when it leads to no file.
_NOWHERE = "is a symbolic link that leads to no file (its target is missing, or a loop)"


def _resolved(path: Path) -> Path:
    """``path.resolve()``; a loop of links resolves to itself (Python 3.11 raised)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _files_under(folder: Path) -> list[Path]:
    """The files (and links) under ``folder``, in name order; a folder among them that cannot
    be read is a ConfigError naming it (rglob left its files out, silently)."""
    import os

    def refuse(exc: OSError) -> None:
        raise ConfigError(
            f"{exc.filename} cannot be read ({exc.strerror}): its files cannot be loaded; "
            "give the folder read permission, or load the other folders by name."
        )

    found: list[Path] = []
    for root, dirs, names in os.walk(folder, onerror=refuse):
        dirs.sort()
        found += [Path(root, name) for name in names]
        # (links to folders are not walked: os.walk leaves them in dirs)
        found += [Path(root, d) for d in dirs if Path(root, d).is_symlink()]
    return sorted(p for p in found if p.is_symlink() or p.is_file())


def _refusal(folder: Path) -> str:
    return (
        f"is a symbolic link to a file outside {folder}; not followed (copy the file into the "
        "folder, or name the file itself)"
    )
