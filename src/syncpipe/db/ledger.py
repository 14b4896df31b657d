"""The ledger: syncpipe's own bookkeeping schema (deploys, applied files, catalog snapshot, loads).

It lives in the schema ``syncpipe``, which is not exposed through the API: only its owner reads
it. Statements here are idempotent so every deploy can run them.
"""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA = "syncpipe"

_LEDGER_DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS syncpipe",
    "REVOKE ALL ON SCHEMA syncpipe FROM PUBLIC",
    """
    CREATE TABLE IF NOT EXISTS syncpipe.deploy_runs (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        env           text NOT NULL,
        started_at    timestamptz NOT NULL,
        finished_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
        status        text NOT NULL CHECK (status IN ('success', 'failed')),
        operator      text NOT NULL DEFAULT session_user,
        client_host   text,
        tool_version  text NOT NULL,
        files_applied integer NOT NULL DEFAULT 0,
        error         text
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS syncpipe.applied_files (
        file             text PRIMARY KEY,
        kind             text NOT NULL,
        sha256           text NOT NULL,
        first_applied_at timestamptz NOT NULL DEFAULT now(),
        applied_at       timestamptz NOT NULL DEFAULT now(),
        duration_ms      integer NOT NULL,
        applied_by       text NOT NULL DEFAULT session_user,
        apply_count      integer NOT NULL DEFAULT 1,
        deploy_id        bigint REFERENCES syncpipe.deploy_runs (id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS syncpipe.catalog_snapshot (
        object_type text NOT NULL,
        identity    text NOT NULL,
        fingerprint text NOT NULL,
        definition  text NOT NULL,
        deploy_id   bigint REFERENCES syncpipe.deploy_runs (id),
        captured_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (object_type, identity)
    )
    """,
    "DROP FUNCTION IF EXISTS syncpipe.xid_is_current(xid)",
)

# The load ledger (services/load/ledger.py reads and writes it). A file is one row of
# load_files, 'loading' until its last batch commits; each committed batch is a row of
# load_batches (its byte range, counts and transaction ids), written in the batch's own
# transaction together with its rejected rows (load_rejects), so the ledger always says how far
# a file got and a killed load resumes after its last committed batch. Written to upgrade an
# older load_files table in place.
_LOAD_LEDGER_DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS syncpipe.load_files (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        file_name    text NOT NULL,
        file_path    text NOT NULL,
        table_name   text NOT NULL,
        sha256       text NOT NULL,
        size_bytes   bigint NOT NULL,
        rows_read    bigint NOT NULL DEFAULT 0,
        inserted     bigint NOT NULL DEFAULT 0,
        updated      bigint NOT NULL DEFAULT 0,
        unchanged    bigint NOT NULL DEFAULT 0,
        rejected     bigint NOT NULL DEFAULT 0,
        started_at   timestamptz NOT NULL,
        finished_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        duration_ms  integer NOT NULL,
        status       text NOT NULL CHECK (status IN ('loaded', 'loaded_with_rejects')),
        reject_file  text,
        loaded_by    text NOT NULL DEFAULT session_user,
        env          text NOT NULL,
        encoding     text NOT NULL DEFAULT 'utf-8'
    )
    """,
    "ALTER TABLE syncpipe.load_files ALTER COLUMN sha256 DROP NOT NULL",
    "ALTER TABLE syncpipe.load_files ADD COLUMN IF NOT EXISTS mtime_ns bigint",
    "ALTER TABLE syncpipe.load_files ADD COLUMN IF NOT EXISTS body_offset bigint",
    "ALTER TABLE syncpipe.load_files ADD COLUMN IF NOT EXISTS rejects_accepted_at timestamptz",
    # Who is loading the file ('loading' rows only; services/load/claim.py): one load per table
    # at a time, across processes and machines. Each committed batch renews heartbeat_at. A
    # dry run holds its table by a 'checking' row, deleted when it ends.
    """
    ALTER TABLE syncpipe.load_files
        ADD COLUMN IF NOT EXISTS holder_token text,
        ADD COLUMN IF NOT EXISTS holder_pid integer,
        ADD COLUMN IF NOT EXISTS holder_host text,
        ADD COLUMN IF NOT EXISTS holder_place text,
        ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
        ADD COLUMN IF NOT EXISTS holder_since timestamptz,
        ADD COLUMN IF NOT EXISTS holder_silent_s double precision,
        ADD COLUMN IF NOT EXISTS holder_pid_start bigint
    """,
    """
    DO $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = 'syncpipe.load_files'::regclass
              AND conname = 'load_files_status_check'
              AND pg_get_constraintdef(oid) LIKE '%checking%'
        ) THEN
            ALTER TABLE syncpipe.load_files DROP CONSTRAINT IF EXISTS load_files_status_check;
            ALTER TABLE syncpipe.load_files ADD CONSTRAINT load_files_status_check
                CHECK (status IN ('loading', 'loaded', 'loaded_with_rejects', 'checking'));
        END IF;
    END
    $$
    """,
    "CREATE INDEX IF NOT EXISTS load_files_sha_idx ON syncpipe.load_files (table_name, sha256)",
    """
    CREATE INDEX IF NOT EXISTS load_files_loading_idx ON syncpipe.load_files (table_name, file_path)
        WHERE status = 'loading'
    """,
    """
    CREATE TABLE IF NOT EXISTS syncpipe.load_batches (
        file_id      bigint NOT NULL REFERENCES syncpipe.load_files (id) ON DELETE CASCADE,
        seq          integer NOT NULL,
        start_offset bigint NOT NULL,
        end_offset   bigint NOT NULL,
        first_line   bigint NOT NULL,
        lines        bigint NOT NULL,
        rows_read    bigint NOT NULL,
        inserted     bigint NOT NULL,
        updated      bigint NOT NULL,
        unchanged    bigint NOT NULL,
        rejected     bigint NOT NULL,
        -- the transaction ids the batch's rows carry (xmin): a later row with one of their
        -- keys repeats a row of this very file
        xids         xid[] NOT NULL DEFAULT '{}',
        committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (file_id, start_offset)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS syncpipe.load_rejects (
        file_id     bigint NOT NULL REFERENCES syncpipe.load_files (id) ON DELETE CASCADE,
        line        bigint NOT NULL,
        column_name text NOT NULL,
        reason      text NOT NULL,
        value       text NOT NULL DEFAULT '',
        raw         text NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS load_rejects_file_idx ON syncpipe.load_rejects (file_id, line)",
    """
    CREATE TABLE IF NOT EXISTS syncpipe.load_seen (
        -- (no foreign key: checked row by row, it took half the time of a file loaded again;
        -- the rows go with their file's: services/load/ledger.py, forget and finish_file)
        file_id bigint NOT NULL,
        key     text NOT NULL,
        -- the batch (its start offset) that left the key unchanged
        batch_start bigint NOT NULL,
        PRIMARY KEY (file_id, key)
    )
    """,
    """
    DO $$
    DECLARE
        v_name name;
    BEGIN
        FOR v_name IN SELECT conname FROM pg_constraint
                      WHERE conrelid = 'syncpipe.load_seen'::regclass AND contype = 'f'
        LOOP
            EXECUTE format('ALTER TABLE syncpipe.load_seen DROP CONSTRAINT %I', v_name);
        END LOOP;
    END $$
    """,
    # The run reports of this database (deploy, full run): `syncpipe report` reads its last run
    # here, so two databases used from one folder never see each other's runs.
    """
    CREATE TABLE IF NOT EXISTS syncpipe.run_reports (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind        text NOT NULL,
        env         text NOT NULL,
        status      text NOT NULL,
        started_at  timestamptz NOT NULL,
        finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        recorded_by text NOT NULL DEFAULT session_user,
        report      jsonb NOT NULL
    )
    """,
)


def ensure_ledger(conn: psycopg.Connection[Any]) -> None:
    """Create the ledger schema and tables where missing (inside the caller's transaction)."""
    for statement in (*_LEDGER_DDL, *_LOAD_LEDGER_DDL):
        conn.execute(statement)


def ledger_exists(conn: psycopg.Connection[Any]) -> bool:
    """True once a deploy has created the ledger."""
    row = conn.execute("SELECT to_regclass('syncpipe.applied_files') IS NOT NULL").fetchone()
    return bool(row and row[0])


def load_ledger_current(conn: psycopg.Connection[Any]) -> bool:
    """True when the load ledger has every column and status this version of syncpipe writes
    (a deploy brings an older one up to date)."""
    columns = ["holder_token", "holder_since", "holder_silent_s", "holder_pid_start"]
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pg_attribute "
        "        WHERE attrelid = to_regclass('syncpipe.load_files') "
        "          AND attname = ANY(%s) AND NOT attisdropped), "
        "       EXISTS (SELECT 1 FROM pg_constraint "
        "               WHERE conrelid = to_regclass('syncpipe.load_files') "
        "                 AND conname = 'load_files_status_check' "
        "                 AND pg_get_constraintdef(oid) LIKE '%%checking%%')",
        (columns,),
    ).fetchone()
    return bool(row and row[0] == len(columns) and row[1])


def applied_files(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, str]]:
    """``kind/name`` -> (sha256, kind) for every file the ledger says was applied."""
    if not ledger_exists(conn):
        return {}
    cur = conn.execute("SELECT file, sha256, kind FROM syncpipe.applied_files")
    return {file: (sha, kind) for file, sha, kind in cur.fetchall()}


def last_deploy(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The most recent successful deploy run, if any."""
    if not ledger_exists(conn):
        return None
    cur = conn.execute(
        """
        SELECT id, env, started_at, finished_at, operator, tool_version, files_applied
        FROM syncpipe.deploy_runs WHERE status = 'success' ORDER BY id DESC LIMIT 1
        """
    )
    row = cur.fetchone()
    if row is None:
        return None
    keys = ("id", "env", "started_at", "finished_at", "operator", "tool_version", "files_applied")
    return dict(zip(keys, row, strict=True))


def record_run(conn: psycopg.Connection[Any], report: dict[str, Any]) -> int:
    """Store a run report (``RunReport.to_dict()``) in this database's ledger; its id."""
    from psycopg.types.json import Jsonb

    row = conn.execute(
        """
        INSERT INTO syncpipe.run_reports (kind, env, status, started_at, report)
        VALUES (%s, %s, %s, %s, %s) RETURNING id
        """,
        (
            str(report.get("kind")),
            str(report.get("env")),
            str(report.get("status")),
            report.get("started_at"),
            Jsonb(report),
        ),
    ).fetchone()
    return int(row[0]) if row else 0


def last_run(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The most recent run report stored in this database, if any."""
    row = conn.execute("SELECT to_regclass('syncpipe.run_reports') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return None
    found = conn.execute(
        "SELECT report FROM syncpipe.run_reports ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return dict(found[0]) if found and isinstance(found[0], dict) else None
