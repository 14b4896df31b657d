"""Staging and upsert: the SQL that puts rows into a target table, built once per file.

* ``copy_direct``: COPY straight into the target, guarded by a WHERE clause that raises (a
  division by zero, naming the record) on a row that may be past the load's limits or shapes,
  so such a row never loads unseen and is judged by the slow path instead;
* a staging table (``LIKE`` the target, so it checks what the target checks) created inside the
  batch's transaction and dropped at its commit: no state outlives a transaction;
* ``conflicts``: staged rows whose key an earlier row of this file holds already;
* ``upsert``: ``INSERT ... ON CONFLICT DO UPDATE ... WHERE IS DISTINCT FROM``, so unchanged rows
  are not touched; keys left unchanged are remembered in ``syncpipe.load_seen``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from syncpipe.db.queries import qualified
from syncpipe.services.load.errors import is_lost
from syncpipe.services.load.header import Header
from syncpipe.services.load.records import MAX_JSON_DEPTH, MAX_KEY_CHARS
from syncpipe.services.load.tables import TableSpec

STAGE = "_syncpipe_stage"
#: (always named in the session's own temporary schema: a name alone finds a table of that
#: name in the search path when this session has none, and DROP TABLE IF EXISTS dropped it)
_STAGE = sql.Identifier("pg_temp", STAGE)
#: The column (where a table has it) naming the ledger file that last wrote a row; the load
#: sets it through the transaction-local setting ``syncpipe.load_file_id`` (sql/ddl/110).
ORIGIN_COLUMN = "load_file_id"
#: A container at nesting level MAX_JSON_DEPTH: the value nests deeper than the limit.
_DEEP = f'strict $.**{{{MAX_JSON_DEPTH}}} ? (@.type() == "array" || @.type() == "object")'
_NOT_STRING = 'lax $[*] ? (@.type() != "string")'


@dataclass(frozen=True)
class OtherFile:
    """A different file of the table that loaded a key already (from the ledger)."""

    id: int
    name: str
    path: str
    #: start offset of its batch that wrote the row, while the row still carries that batch's
    #: transaction id (the merge rewrites team pages)
    batch_start: int | None


@dataclass
class Conflict:
    """A staged row whose key was seen before in this file."""

    ord: int
    line: int | None
    key: list[str]
    #: where the earlier row is: 'stage' (this piece, line known), 'batch' (this batch, a row
    #: with one of its own transaction ids), 'file' (a committed batch), 'seen' (a committed
    #: batch that left the key unchanged), 'other' (a different file of the table)
    where: str
    first_line: int | None
    xid: str | None
    #: start offset of the committed batch that holds the earlier row, when known
    batch_start: int | None
    #: the different file of the table that loaded the key ('other')
    other: OtherFile | None = None


@dataclass(frozen=True)
class Upserted:
    """What an upsert did."""

    inserted: int
    updated: int
    unchanged: int
    xids: tuple[str, ...]


class Target:
    """The statements that write one file's rows into its table."""

    def __init__(self, spec: TableSpec, header: Header) -> None:
        self.spec = spec
        self.header = header
        self.table = qualified(spec.name)
        cols = [sql.Identifier(c) for c in header.names]
        self.cols = sql.SQL(", ").join(cols)
        self.pk = [sql.Identifier(c) for c in spec.primary_key]
        self.pk_list = sql.SQL(", ").join(self.pk)
        #: the file's columns an upsert may change (the rest are the key)
        self.noncol_names = [c for c in header.names if c not in spec.primary_key]
        self.noncols = [sql.Identifier(c) for c in self.noncol_names]
        guard = self._guard()
        options = sql.SQL("(FORMAT csv, FORCE_NULL ({}))").format(self.cols)
        self.copy_direct = sql.SQL("COPY {} ({}) FROM STDIN {} WHERE {}").format(
            self.table, self.cols, options, guard
        )
        self.copy_stage_raw = sql.SQL("COPY {} ({}) FROM STDIN {} WHERE {}").format(
            _STAGE, self.cols, options, guard
        )
        self.copy_stage_lines = sql.SQL("COPY {} ({}, _syncpipe_line) FROM STDIN {}").format(
            _STAGE, self.cols, options
        )

    def _guard(self) -> sql.Composable:
        """True for a row the load takes as it is; a runtime error naming the record (so it is
        judged on the slow path) for one that may be past the load's limits or shapes: JSON
        nested deeper than ``MAX_JSON_DEPTH``, a JSON array of strings holding anything else,
        a limited value longer than ``MAX_KEY_CHARS`` (an array whose text is longer may hold
        one). Member e-mails are screened in bytes (``scan``)."""
        checks: list[sql.Composable] = []
        for name in self.header.names:
            col = sql.Identifier(name)
            base = self.spec.columns[name].type_name.split("(")[0]
            limit = self.spec.limit(name)
            if base in ("json", "jsonb"):
                if self.spec.shape(name) != "array_of_strings":
                    # (an array of strings nests one level: the element check says the rest)
                    # A value of fewer bytes than 4 per level cannot nest that deep: the walk
                    # is left to the larger values.
                    checks.append(
                        sql.SQL(
                            "pg_column_size({}) < {} OR NOT jsonb_path_exists({}::jsonb, {})"
                        ).format(col, sql.Literal(4 * MAX_JSON_DEPTH), col, sql.Literal(_DEEP))
                    )
                if self.spec.shape(name) == "array_of_strings":
                    checks.append(
                        sql.SQL("NOT jsonb_path_exists({}::jsonb, {})").format(
                            col, sql.Literal(_NOT_STRING)
                        )
                    )
                if limit == "strings":
                    # The value's size in bytes bounds each string's (not yet compressed here).
                    checks.append(
                        sql.SQL("pg_column_size({}) <= {}").format(col, sql.Literal(MAX_KEY_CHARS))
                    )
            elif limit == "text":
                checks.append(
                    sql.SQL("octet_length({}) <= {}").format(col, sql.Literal(MAX_KEY_CHARS))
                )
        if not checks:
            return sql.SQL("true")
        ok = sql.SQL(" AND ").join(sql.SQL("coalesce({}, true)").format(c) for c in checks)
        # Not a constant, so the planner cannot fold it: it raises only when reached.
        fail = sql.SQL("1 / (0 * octet_length(coalesce({}::text, ''))) = 1").format(self.pk[0])
        return sql.SQL("CASE WHEN {} THEN true ELSE {} END").format(ok, fail)

    # -- staging -----------------------------------------------------------------------------
    def create_stage(self, conn: psycopg.Connection[Any]) -> None:
        """An empty staging table for this transaction (dropped when it commits)."""
        stage = _STAGE
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING IDENTITY INCLUDING GENERATED) ON COMMIT DROP"
            ).format(stage, self.table)
        )
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD COLUMN _syncpipe_line bigint, "
                "ADD COLUMN _syncpipe_ord bigint GENERATED ALWAYS AS IDENTITY"
            ).format(stage)
        )

    def conflicts(
        self,
        conn: psycopg.Connection[Any],
        file_id: int | None,
        batch_xids: list[str],
        name: str,
    ) -> list[Conflict]:
        """Staged rows whose key came earlier: in the stage, in this batch's rows, in a committed
        batch of the file (by the transaction id its row carries), in ``load_seen``, or in a
        different file of the table (another file name than ``name``, this file's: a file of the
        same name, in any folder, is a version of this one; the row's ``load_file_id``, else
        its transaction id, names the file that loaded it)."""
        stage = _STAGE
        cols_s = sql.SQL(", ").join(sql.SQL("s.{}").format(c) for c in self.pk)
        key_text = sql.SQL(", ").join(sql.SQL("r.{}::text").format(c) for c in self.pk)
        origin: sql.Composable = sql.SQL("ox.file_id")
        # (every name the load adds to a table's columns, here and in the stage, begins with
        # "_syncpipe_": a key column named "origin", "n" or "x" made the names ambiguous)
        held = "t.xmin AS _syncpipe_xmin"
        # (the key as load_seen keeps it: the target row's text where equal keys may be spelled
        # differently, none where there is no such row; else the staged row's)
        seen_key = self._seen_key("r")
        if self.spec.spelled_key:
            held += ", " + self._seen_key("t").as_string(conn) + " AS _syncpipe_key"
            seen_key = sql.SQL("r._syncpipe_key")
        if ORIGIN_COLUMN in self.spec.columns:
            origin = sql.SQL("coalesce(r._syncpipe_origin, ox.file_id)")
            held += f", t.{ORIGIN_COLUMN} AS _syncpipe_origin"
        # The stage was just filled: its size and its keys' statistics make the joins below
        # index probes (the other columns' statistics, a team page's members among them, would
        # only cost reading them).
        conn.execute(sql.SQL("ANALYZE {} ({})").format(stage, self.pk_list))
        row = conn.execute(
            "SELECT coalesce(array_agg(x::text), '{}') FROM syncpipe.load_batches b, "
            "unnest(b.xids) x WHERE b.file_id = %s",
            (file_id,),
        ).fetchone()
        file_xids = list(row[0]) if row else []
        rows = conn.execute(
            sql.SQL(
                """
            WITH ranked AS (
                SELECT s._syncpipe_ord, s._syncpipe_line, {cols_s},
                       row_number() OVER w AS _syncpipe_n,
                       first_value(s._syncpipe_line) OVER w AS _syncpipe_first
                FROM {stage} s
                WINDOW w AS (PARTITION BY {cols_s} ORDER BY s._syncpipe_ord)
            ), held AS MATERIALIZED (
                -- (written out: left to the planner, the small joins below ran once per row)
                SELECT r.*, t.* FROM ranked r LEFT JOIN LATERAL ({held}) t ON true
            ), other AS MATERIALIZED (
                SELECT x, b.file_id, b.start_offset
                FROM syncpipe.load_files f
                JOIN syncpipe.load_batches b ON b.file_id = f.id, unnest(b.xids) x
                WHERE f.table_name = %(table)s AND f.file_name <> %(name)s
            )
            SELECT r._syncpipe_ord, r._syncpipe_line, ARRAY[{key_text}], r._syncpipe_n,
                   r._syncpipe_first, r._syncpipe_xmin::text,
                   r._syncpipe_xmin = ANY(%(file_xids)s::xid[]), k.batch_start,
                   o.id, o.file_name, o.file_path,
                   CASE WHEN ox.file_id = o.id THEN ox.start_offset END
            FROM held r
            LEFT JOIN syncpipe.load_seen k
                ON k.file_id = %(file)s AND k.key = {seen_key}
            LEFT JOIN other ox ON ox.x = r._syncpipe_xmin
            LEFT JOIN syncpipe.load_files o
                ON o.id = {origin} AND o.table_name = %(table)s AND o.file_name <> %(name)s
            WHERE r._syncpipe_n > 1 OR r._syncpipe_xmin = ANY(%(xids)s::xid[])
               OR r._syncpipe_xmin = ANY(%(file_xids)s::xid[])
               OR k.batch_start IS NOT NULL OR o.id IS NOT NULL
            ORDER BY r._syncpipe_ord
            """
            ).format(
                stage=stage,
                cols_s=cols_s,
                key_text=key_text,
                held=self._probe("r", held),
                seen_key=seen_key,
                origin=origin,
            ),
            {
                "file": file_id,
                "xids": batch_xids,
                "file_xids": file_xids,
                "table": self.spec.name,
                "name": name,
            },
        ).fetchall()
        out = []
        for ord_, line, key, n, first, xmin, of_file, kstart, oid, oname, opath, ostart in rows:
            other: OtherFile | None = None
            if n > 1:
                where, start = "stage", None
            elif xmin in batch_xids:
                where, start = "batch", None
            elif of_file:
                where, start = "file", None  # the batch is found by the transaction id
            elif kstart is not None:
                where, start = "seen", int(kstart)
            else:
                where, start = "other", None
                other = OtherFile(
                    int(oid), str(oname), str(opath), None if ostart is None else int(ostart)
                )
            out.append(
                Conflict(
                    ord=int(ord_),
                    line=None if line is None else int(line),
                    key=[str(k) for k in key],
                    where=where,
                    first_line=None if first is None or where != "stage" else int(first),
                    xid=xmin,
                    batch_start=start,
                    other=other,
                )
            )
        return out

    def _differs(self, left: str, right: str) -> sql.Composable:
        """True where row ``left`` holds other values than row ``right`` in the file's
        non-key columns (NULLs equal; a type with no equality, json say, by its text)."""
        text = [name in self.spec.by_text for name in self.noncol_names]
        sides = [
            sql.SQL(", ").join(
                sql.SQL("{}.{}{}").format(sql.SQL(alias), c, sql.SQL("::text" if t else ""))
                for c, t in zip(self.noncols, text, strict=True)
            )
            for alias in (left, right)
        ]
        return sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(*sides)

    def _probe(
        self, outer: str, columns: str | sql.Composable, where: sql.Composable | None = None
    ) -> sql.Composable:
        """``SELECT columns FROM target t WHERE <t's key is outer's> [AND where] OFFSET 0``:
        the target row of a staged row, found by its key's index. (``OFFSET 0`` keeps the
        planner from joining the whole target: a hash join read every row of the table for
        each batch, so a file loaded again took time growing with the table's square.)"""
        join = sql.SQL(" AND ").join(
            sql.SQL("t.{c} = {o}.{c}").format(c=c, o=sql.SQL(outer)) for c in self.pk
        )
        if where is not None:
            join = sql.SQL("{} AND {}").format(join, where)
        if isinstance(columns, str):
            columns = sql.SQL(columns)
        return sql.SQL("SELECT {} FROM {} t WHERE {} OFFSET 0").format(columns, self.table, join)

    def _seen_key(self, row: str) -> sql.Composable:
        """The key of row ``row`` (of the target, or staged) as ``syncpipe.load_seen`` keeps
        it: as its text, which for a key of equal values spelled differently ("3.50" for 3.5,
        another case in a case-insensitive column) must be the target row's, so that such a
        key is still the key seen (``TableSpec.spelled_key``)."""
        return sql.SQL("ARRAY[{}]::text").format(
            sql.SQL(", ").join(sql.SQL("{}.{}::text").format(sql.SQL(row), c) for c in self.pk)
        )

    def _same_row(self) -> sql.Composable:
        """For a staged row ``s``: its key is in the target with the same values already."""
        return sql.SQL("EXISTS ({})").format(
            self._probe("s", "1", sql.SQL("NOT {}").format(self._differs("t", "s")))
        )

    def counted_as(self, conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
        """How ``upsert`` would count the staged rows against the table as it is: (inserted,
        updated, unchanged)."""
        absent = sql.SQL("NOT EXISTS ({})").format(self._probe("s", "1"))
        same = self._same_row() if self.noncols else sql.SQL("NOT {}").format(absent)
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}), count(*) FROM {} s"
            ).format(absent, same, _STAGE)
        ).fetchone()
        assert row is not None
        inserted, unchanged, staged = int(row[0]), int(row[1]), int(row[2])
        return inserted, staged - inserted - unchanged, unchanged

    def lock_rows(self, conn: psycopg.Connection[Any]) -> None:
        """Lock the target rows the stage will change, in key order, without waiting: a row
        another transaction holds (a merge marking pages synced) raises LockNotAvailable and
        the batch is tried again later, so a load never waits inside the database on a
        transaction that may wait on it (no deadlock). Rows the stage holds unchanged are
        neither locked nor written (``upsert`` leaves them out): a file loaded again costs
        reads, not a row lock written on every row."""
        if not self.noncols:
            return  # (ON CONFLICT DO NOTHING: nothing is locked or changed)
        conn.execute(
            sql.SQL(
                "SELECT count(*) FROM (SELECT * FROM {} ORDER BY {}) s, "
                "LATERAL ({} FOR UPDATE NOWAIT) locked"
            ).format(
                _STAGE,
                self.pk_list,
                self._probe("s", "1", self._differs("t", "s")),
            )
        )

    def drop_staged(self, conn: psycopg.Connection[Any], ords: list[int]) -> None:
        """Forget staged rows."""
        if ords:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE _syncpipe_ord = ANY(%s)").format(_STAGE),
                (ords,),
            )

    def upsert(
        self,
        conn: psycopg.Connection[Any],
        *,
        file_id: int | None,
        batch_start: int,
        ord_: int | None = None,
    ) -> Upserted:
        """INSERT ... ON CONFLICT DO UPDATE the stage (or one staged row) into the target."""
        stage = _STAGE
        if self.noncols:
            assignments = sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in self.noncols
            )
            if ORIGIN_COLUMN in self.spec.columns and ORIGIN_COLUMN not in self.header.names:
                assignments = sql.SQL("{}, {c} = EXCLUDED.{c}").format(
                    assignments, c=sql.Identifier(ORIGIN_COLUMN)
                )
            conflict: sql.Composable = sql.SQL("DO UPDATE SET {} WHERE {}").format(
                assignments, self._differs("t", "EXCLUDED")
            )
        else:
            conflict = sql.SQL("DO NOTHING")
        where = (
            sql.SQL("WHERE _syncpipe_ord = {}").format(sql.Literal(ord_)) if ord_ else sql.SQL("")
        )
        # Rows the target holds unchanged are left out of the INSERT: ON CONFLICT DO UPDATE
        # would lock each (its WHERE is judged after the lock), writing every page again, and
        # wait on a row another transaction holds, which ``lock_rows`` left alone.
        unchanged: sql.Composable = sql.SQL("")
        if self.noncols:
            unchanged = sql.SQL("{} NOT {}").format(
                sql.SQL("AND" if ord_ else "WHERE"), self._same_row()
            )
        returned = sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in self.pk)
        join_u = sql.SQL(" AND ").join(sql.SQL("u.{c} = s.{c}").format(c=c) for c in self.pk)
        seen: sql.Composable = sql.SQL("")
        if file_id is not None:
            # (the keys of the rows left unchanged)
            key: sql.Composable = self._seen_key("s")
            held: sql.Composable = sql.SQL("")
            if self.spec.spelled_key:
                # (as the target row spells them: the statement's snapshot, taken before its
                # write, holds it)
                key = sql.SQL("h._syncpipe_key")
                held = sql.SQL("CROSS JOIN LATERAL ({}) h").format(
                    self._probe("s", sql.SQL("{} AS _syncpipe_key").format(self._seen_key("t")))
                )
            seen = sql.SQL(
                """, seen AS (
                INSERT INTO syncpipe.load_seen (file_id, key, batch_start)
                SELECT {file}, {key}, {start} FROM {stage} s {held} {where}
                {and_} NOT EXISTS (SELECT 1 FROM up u WHERE {join_u})
                ON CONFLICT (file_id, key) DO NOTHING
            )"""
            ).format(
                file=sql.Literal(file_id),
                key=key,
                held=held,
                start=sql.Literal(batch_start),
                stage=stage,
                where=where,
                and_=sql.SQL("AND" if ord_ else "WHERE"),
                join_u=join_u,
            )
        if self.spec.partitioned:
            # (a write into a partitioned table cannot return its rows' system columns: a
            # row inserted is one the statement's snapshot, taken before it, did not hold,
            # and the rows one statement writes carry one transaction id, read after it)
            new_key = sql.SQL(" AND ").join(sql.SQL("o.{c} = up.{c}").format(c=c) for c in self.pk)
            written: sql.Composable = sql.SQL(
                "NOT EXISTS (SELECT 1 FROM {target} o WHERE {new_key}) AS _syncpipe_inserted, "
                "NULL::text AS _syncpipe_xid"
            ).format(target=self.table, new_key=new_key)
            returning: sql.Composable = returned
            sample: sql.Composable = sql.SQL("(SELECT ARRAY[{}] FROM up LIMIT 1)").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in self.pk)
            )
        else:
            written = sql.SQL("_syncpipe_inserted, _syncpipe_xid")
            returning = sql.SQL(
                "{}, (xmax = 0) AS _syncpipe_inserted, t.xmin::text AS _syncpipe_xid"
            ).format(returned)
            sample = sql.SQL("NULL::text[]")
        row = conn.execute(
            sql.SQL(
                """
            WITH up AS (
                INSERT INTO {target} AS t ({cols})
                SELECT {cols} FROM {stage} s {where} {unchanged} ORDER BY _syncpipe_ord
                ON CONFLICT ({pk}) {conflict}
                RETURNING {returning}
            ){seen}, written AS (SELECT {written} FROM up)
            SELECT count(*) FILTER (WHERE _syncpipe_inserted),
                   count(*) FILTER (WHERE NOT _syncpipe_inserted),
                   (SELECT count(*) FROM {stage} {where}),
                   coalesce(array_agg(DISTINCT _syncpipe_xid)
                            FILTER (WHERE _syncpipe_xid IS NOT NULL), '{{}}'),
                   {sample}
            FROM written
            """
            ).format(
                target=self.table,
                cols=self.cols,
                stage=stage,
                where=where,
                pk=self.pk_list,
                conflict=conflict,
                returning=returning,
                seen=seen,
                unchanged=unchanged,
                written=written,
                sample=sample,
            )
        ).fetchone()
        assert row is not None
        inserted, updated, staged = int(row[0]), int(row[1]), int(row[2])
        xids = tuple(row[3])
        if row[4] is not None:
            xid = self.xmin_of(conn, list(row[4]))
            xids = (xid,) if xid is not None else ()
        return Upserted(inserted, updated, staged - inserted - updated, xids)

    def staged_rows(self, conn: psycopg.Connection[Any]) -> list[tuple[int, int]]:
        """(ord, line) of every staged row."""
        rows = conn.execute(
            sql.SQL("SELECT _syncpipe_ord, _syncpipe_line FROM {} ORDER BY _syncpipe_ord").format(
                _STAGE
            )
        ).fetchall()
        return [(int(o), int(ln)) for o, ln in rows]

    def take_over(
        self, conn: psycopg.Connection[Any], ords: list[int]
    ) -> tuple[list[int], set[str]] | None:
        """The target rows of these staged rows, written by a later batch of the file that
        committed first, made theirs before the upsert, in one write each (a row's update
        triggers fire once): the staged row's values, its key as it spells it ("3.5" where
        the later row had "3.50"), and this batch's transaction id, so that a further repeat
        of the key finds this batch, and its line. The rows taken over leave the stage.
        Returns their ords and the transaction ids they carry; None where the server refuses
        (the upsert then writes them as it writes the rest)."""
        keys = sql.SQL(" AND ").join(sql.SQL("t.{c} = s.{c}").format(c=c) for c in self.pk)
        names = [sql.Identifier(c) for c in self.header.names]
        sets = [sql.SQL("{c} = s.{c}").format(c=c) for c in names]
        if ORIGIN_COLUMN in self.spec.columns and ORIGIN_COLUMN not in self.header.names:
            sets.append(sql.SQL("{} = DEFAULT").format(sql.Identifier(ORIGIN_COLUMN)))
        try:
            with conn.transaction():
                rows = conn.execute(
                    sql.SQL(
                        "UPDATE {} t SET {} FROM {} s WHERE s._syncpipe_ord = ANY(%s) AND {} "
                        "RETURNING s._syncpipe_ord"
                    ).format(self.table, sql.SQL(", ").join(sets), _STAGE, keys),
                    (ords,),
                ).fetchall()
        except psycopg.Error as exc:
            if is_lost(conn, exc):
                raise
            return None
        taken = [int(r[0]) for r in rows]
        xids = conn.execute(
            sql.SQL(
                "SELECT DISTINCT t.xmin::text FROM {} t JOIN {} s ON {} "
                "WHERE s._syncpipe_ord = ANY(%s)"
            ).format(self.table, _STAGE, keys),
            (taken,),
        ).fetchall()
        self.drop_staged(conn, taken)
        return taken, {str(r[0]) for r in xids}

    def staged_ord(self, conn: psycopg.Connection[Any], line: int) -> int | None:
        """The ord of the staged row of this line (the last one staged)."""
        row = conn.execute(
            sql.SQL("SELECT max(_syncpipe_ord) FROM {} WHERE _syncpipe_line = %s").format(_STAGE),
            (line,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def xmin_of(self, conn: psycopg.Connection[Any], key: list[str]) -> str | None:
        """The transaction id the target row of ``key`` carries."""
        where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(c) for c in self.pk)
        row = conn.execute(
            sql.SQL("SELECT xmin::text FROM {} WHERE {}").format(self.table, where), key
        ).fetchone()
        return None if row is None else str(row[0])
