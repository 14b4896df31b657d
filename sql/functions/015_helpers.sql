-- Small helpers of the member pipeline and the merge.

-- Progress: a NOTICE "syncpipe.phase <name>" the CLI turns into a progress display.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_phase(p_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    RAISE NOTICE 'syncpipe.phase % %', p_name, to_char(clock_timestamp(), 'HH24:MI:SS.MS');
END;
$$;

-- Work tables. The member pipeline and the merge compute into UNLOGGED tables in the schema
-- syncpipe_work (sql/ddl/080_work_schema.sql), not into temporary tables: PostgreSQL never
-- scans a temporary table in parallel, and a merge's statements over millions of rows gain
-- from a second process. The tables are created and dropped inside the run's transaction, so
-- no other session ever sees one (a failed run rolls their creation back); the advisory lock
-- that every run takes (1398361667, 2) keeps two runs from using the same names at once.

-- Drop the listed work tables if they exist (quietly). A work table may be a view over
-- others (a projection the next statement reads once, not worth writing): the views go first,
-- so that no table is dropped from under one.
DROP FUNCTION IF EXISTS public.merge_drop_temp(text[]);
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_work_drop(p_names text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_item record;
BEGIN
    FOR v_item IN
        SELECT c.relname, c.relkind = 'v' AS is_view
        FROM pg_class c
        WHERE c.relnamespace = 'syncpipe_work'::regnamespace AND c.relname = ANY (p_names)
          AND c.relkind IN ('r', 'p', 'v')
        ORDER BY c.relkind = 'v' DESC
    LOOP
        EXECUTE format('DROP %s syncpipe_work.%I',
                       CASE WHEN v_item.is_view THEN 'VIEW' ELSE 'TABLE' END, v_item.relname);
    END LOOP;
END;
$$;

-- Drop every work table and view (the end of a run); returns how many there were.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_work_clear()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_views  text;
    v_tables text;
    v_count  integer;
BEGIN
    SELECT string_agg(format('syncpipe_work.%I', relname), ', ') FILTER (WHERE relkind = 'v'),
           string_agg(format('syncpipe_work.%I', relname), ', ') FILTER (WHERE relkind <> 'v'),
           count(*)
    INTO v_views, v_tables, v_count
    FROM pg_class
    WHERE relnamespace = 'syncpipe_work'::regnamespace AND relkind IN ('r', 'p', 'v');
    IF v_views IS NOT NULL THEN
        EXECUTE 'DROP VIEW ' || v_views;
    END IF;
    IF v_tables IS NOT NULL THEN
        EXECUTE 'DROP TABLE ' || v_tables;
    END IF;
    RETURN v_count;
END;
$$;

-- The review decisions as the agents are now: a retired side stands for the active agent at
-- the end of its merged_into chain, each pair lower id first; a pair now one agent, or with a
-- side in a cycle made by hand, is left out.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_decisions_now()
RETURNS TABLE (agent_low bigint, agent_high bigint, decision text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
    -- (one hop after a merge; more after agents retired by hand into retired ones)
    WITH RECURSIVE chain (start, agent_id, next, depth) AS (
        SELECT a.agent_id, a.agent_id, a.merged_into, 0
        FROM public.new_unified_agents a
        WHERE a.agent_id IN (SELECT agent_low FROM public.merge_decisions
                             UNION SELECT agent_high FROM public.merge_decisions)
        UNION ALL
        SELECT c.start, a.agent_id, a.merged_into, c.depth + 1
        FROM chain c JOIN public.new_unified_agents a ON a.agent_id = c.next
        WHERE c.depth < 100
    ),
    now AS (SELECT start, agent_id FROM chain WHERE next IS NULL)
    SELECT least(x.agent_id, y.agent_id), greatest(x.agent_id, y.agent_id), d.decision
    FROM public.merge_decisions d
    JOIN now x ON x.start = d.agent_low
    JOIN now y ON y.start = d.agent_high
    WHERE x.agent_id <> y.agent_id;
$$;

-- (the merge runs as its caller: service_role, by RPC, calls these too)

-- How many rows p_table holds, erring high, without counting them: the most of reltuples
-- (ANALYZE's count; -1 where the table was never analyzed, as in a restored dump until
-- autovacuum gets to it, and forever with autovacuum off), the statistics system's live rows
-- (rows written in this database since its statistics began: none in a copy made by CREATE
-- DATABASE ... TEMPLATE) and the planner's estimate (the table's current size at the density
-- ANALYZE last saw, or at one guessed from its column types: often several times too many
-- for wide rows). The caller needs SELECT on the table. (Where a row level security policy
-- applies to the caller, as with FORCE ROW LEVEL SECURITY, the planner counts only the rows
-- it lets through, and the result may err low: syncpipe's tables are read by their owner,
-- whom their policies do not bind.)
CREATE OR REPLACE FUNCTION syncpipe_internal.table_rows(p_table regclass)
RETURNS double precision
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_plan json;
BEGIN
    EXECUTE format('EXPLAIN (FORMAT JSON) SELECT FROM %s', p_table) INTO v_plan;
    RETURN greatest((SELECT reltuples FROM pg_class WHERE oid = p_table)::double precision,
                    pg_stat_get_live_tuples(p_table)::double precision,
                    (v_plan -> 0 -> 'Plan' ->> 'Plan Rows')::double precision);
END;
$$;

-- ANALYZE a work table (schema syncpipe_work), or only p_columns of it, on a sample of a
-- tenth of its rows: at least 3,000 (statistics target 10), at most the server's sample
-- (300 rows per unit of default_statistics_target: 30,000 by default). The server's sample
-- is the whole of a small table: 20-80 ms a table, 0.56 s of the 46 tables a 1% incremental
-- run analyzes at 1M persons (10k-50k rows each), 0.12 s at 3,000 rows; a first run's tables
-- of 300,000 rows or more keep the server's sample. (The row count: the rows this
-- transaction wrote, as the table was made in it, else ANALYZE's last count.)
CREATE OR REPLACE FUNCTION syncpipe_internal.work_analyze(p_table text,
                                                          p_columns text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_table   regclass := format('syncpipe_work.%I', p_table)::regclass;
    v_default integer := current_setting('default_statistics_target')::integer;
    v_rows    double precision;
BEGIN
    v_rows := greatest(pg_stat_get_xact_tuples_inserted(v_table)
                       - pg_stat_get_xact_tuples_deleted(v_table),
                       (SELECT reltuples FROM pg_class WHERE oid = v_table));
    PERFORM set_config('default_statistics_target',
                       least(v_default, greatest(10, ceil(v_rows / 3000)))::text, true);
    EXECUTE format('ANALYZE %s %s', v_table,
                   (SELECT '(' || string_agg(quote_ident(c), ', ' ORDER BY i) || ')'
                    FROM unnest(p_columns) WITH ORDINALITY AS u (c, i)));
    -- (the caller's target back; an error undoes the change with its (sub)transaction)
    PERFORM set_config('default_statistics_target', v_default::text, true);
END;
$$;

-- Bulk mode. Before a very large write into p_table, drop its secondary indexes and its
-- foreign keys; merge_bulk_end() builds them again, each in one pass (an index build and a
-- set-based FK validation cost far less than maintaining them row by row for millions of rows).
-- Primary keys and unique constraints stay (ON CONFLICT needs them). The definitions wait in
-- sp_bulk; if the transaction fails, PostgreSQL's transactional DDL restores everything.
-- Returns false (and does nothing) when p_rows is small next to the table, or when the caller
-- does not own it (service_role by RPC: only an owner may drop and build indexes).
DROP FUNCTION IF EXISTS public.merge_bulk_begin(regclass, bigint);
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_bulk_begin(p_table regclass, p_rows bigint,
                                                   p_keys boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_item record;
BEGIN
    IF NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = p_table), 'USAGE') THEN
        RETURN false;
    END IF;
    -- (too high a size is the safe side: by reltuples alone, a table never analyzed counted
    -- as empty, and a batch of 60k records into a restored database of 1.3M agents rebuilt
    -- every index of its million-row tables: 43 s against 25 s)
    IF p_rows < greatest(50000, 0.25 * syncpipe_internal.table_rows(p_table)) THEN
        RETURN false;
    END IF;
    IF to_regclass('syncpipe_work.sp_bulk') IS NULL THEN
        CREATE UNLOGGED TABLE syncpipe_work.sp_bulk (tbl regclass, kind text, name text,
                                                     def text);
    END IF;
    INSERT INTO sp_bulk
    SELECT p_table, 'fk', conname, pg_get_constraintdef(oid)
    FROM pg_constraint WHERE conrelid = p_table AND contype = 'f';
    INSERT INTO sp_bulk
    SELECT p_table, 'index', format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid)
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE i.indrelid = p_table AND NOT i.indisprimary AND NOT i.indisunique
      AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid);
    IF p_keys THEN
        -- The caller writes no conflicting rows (plain INSERT): keys are rebuilt at the end,
        -- and a duplicate would still fail the transaction there.
        INSERT INTO sp_bulk
        SELECT p_table, 'key', conname, pg_get_constraintdef(oid)
        FROM pg_constraint c
        WHERE conrelid = p_table AND contype IN ('p', 'u')
          AND NOT EXISTS (SELECT 1 FROM pg_constraint f
                          WHERE f.contype = 'f' AND f.conindid = c.conindid);
    END IF;
    FOR v_item IN SELECT * FROM sp_bulk WHERE tbl = p_table LOOP
        IF v_item.kind IN ('fk', 'key') THEN
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', p_table, v_item.name);
        ELSE
            EXECUTE format('DROP INDEX %s', v_item.name);
        END IF;
    END LOOP;
    RETURN true;
END;
$$;

CREATE OR REPLACE FUNCTION syncpipe_internal.merge_bulk_end(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_item record;
BEGIN
    IF to_regclass('syncpipe_work.sp_bulk') IS NULL THEN
        RETURN;
    END IF;
    -- Index builds sort in memory when they may (restored at the end of the transaction).
    PERFORM set_config('maintenance_work_mem', '512MB', true);
    FOR v_item IN SELECT * FROM sp_bulk WHERE tbl = p_table AND kind = 'key' LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', p_table, v_item.name, v_item.def);
    END LOOP;
    FOR v_item IN SELECT * FROM sp_bulk WHERE tbl = p_table AND kind = 'index' LOOP
        EXECUTE v_item.def;
    END LOOP;
    FOR v_item IN SELECT * FROM sp_bulk WHERE tbl = p_table AND kind = 'fk' LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', p_table, v_item.name,
                       v_item.def);
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', p_table, v_item.name);
    END LOOP;
    DELETE FROM sp_bulk WHERE tbl = p_table;
    -- The planner needs to know the table grew by millions of rows.
    EXECUTE format('ANALYZE %s', p_table);
END;
$$;

-- Allocate p_count ids of a table's identity column at once; returns the first.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_allocate_ids(p_table text, p_column text, p_count bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_seq   text := pg_get_serial_sequence(p_table, p_column);
    v_first bigint;
BEGIN
    IF p_count <= 0 THEN
        RETURN NULL;
    END IF;
    -- Serialize with other allocators of this sequence for the rest of the transaction.
    PERFORM pg_advisory_xact_lock(1398361667, 100);
    v_first := nextval(v_seq);
    PERFORM setval(v_seq, v_first + p_count - 1);
    RETURN v_first;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
