"""Small query helpers shared by the services."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

#: What ``Connection.execute`` accepts (psycopg's Query minus t-strings).
Query = str | bytes | sql.SQL | sql.Composed


def scalar(conn: psycopg.Connection[Any], query: Query, params: Any = None) -> Any:
    """The first column of the first row, or None."""
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def name_parts(name: str) -> list[str]:
    """The identifiers of a dotted SQL name, its quotes taken off: ``public."We.ird"`` is
    ``["public", "We.ird"]`` (an unquoted part as written: syncpipe's names come from the
    catalog, where SQL already folded them)."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    i = 0
    while i < len(name):
        ch = name[i]
        if quoted and ch == '"' and name[i + 1 : i + 2] == '"':
            buf.append('"')
            i += 1
        elif ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def qualified(name: str) -> sql.Composed:
    """Quote ``schema.table`` (or ``table``; either part may be SQL-quoted) as an identifier."""
    return sql.SQL(".").join(sql.Identifier(p) for p in name_parts(name))


def table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """True if ``schema.table`` exists."""
    return bool(scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (name,)))
