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


def qualified(name: str) -> sql.Composed:
    """Quote ``schema.table`` (or ``table``) as an identifier."""
    parts = name.split(".", 1)
    return sql.SQL(".").join(sql.Identifier(p) for p in parts)


def table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """True if ``schema.table`` exists."""
    return bool(scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (name,)))
