-- run_unified_member_pipeline(): explode bronze.company_info_raw.team_members into
-- public.unified_company_member, one normalized row per member, in set-based statements.
--
-- * Only pages whose members changed since the last run are read (members_synced), so a run
--   with nothing new reads one flag per page and writes nothing.
-- * Every member shape is accepted: name or full_name; email or emails and phone or phones,
--   each a string or an array (phones may be numbers). Anything else in the array (numbers,
--   nulls, strings, objects with nothing usable) is skipped and counted, never failing a run.
-- * record_hash (page, normalized name, e-mails, phones) makes a member idempotent; members
--   that disappeared from a re-read page are removed (a trigger removes their lineage).
-- * p_options: {"dry_run": true} computes into work tables only; {"log_id": n} reuses a
--   unified_merge_logs row the caller created (so a lost session still leaves a trace);
--   {"merge_follows": true} says run_unified_merge_batch() runs next in this transaction:
--   new members are then written already processed (the merge finds them by their missing
--   lineage), which saves rewriting a million rows just to flip a flag; {"keep_work": true}
--   leaves the work tables (schema syncpipe_work) for the caller, who drops them with
--   merge_work_clear() before the transaction ends (a dry run's merge reads sp_members);
--   {"rescan": true} reads every page, not only those marked changed (a page written with
--   the triggers disabled keeps members_synced): its members are compared by record_hash as
--   on any re-read page, so an unchanged page changes nothing.
CREATE OR REPLACE FUNCTION public.run_unified_member_pipeline(p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
-- Runs as its owner (who deployed it): service_role calls it by RPC without any right on
-- the internal schemas it works in.
SECURITY DEFINER
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET work_mem = '4MB'  -- the SET makes the function restore work_mem on exit
-- Parallel workers start cheaper than PostgreSQL assumes next to statements of seconds.
SET parallel_setup_cost = 100
SET parallel_tuple_cost = 0.01
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_dry      boolean := coalesce((p_options ->> 'dry_run')::boolean, false);
    v_keep     boolean := coalesce((p_options ->> 'keep_work')::boolean, false);
    v_follows  boolean := coalesce((p_options ->> 'merge_follows')::boolean, false);
    v_rescan   boolean := coalesce((p_options ->> 'rescan')::boolean, false);
    v_log      bigint := (p_options ->> 'log_id')::bigint;
    v_started  timestamptz := clock_timestamp();
    v_pages    integer := 0;
    v_elements integer := 0;
    v_objects  integer := 0;
    v_usable   integer := 0;
    v_distinct integer := 0;
    v_inserted integer := 0;
    v_removed  integer := 0;
    v_changed  integer := 0;
    v_counts   jsonb;
    v_bulk     boolean;
    v_seqscan  text := current_setting('enable_seqscan');
    v_indexscan text := current_setting('enable_indexscan');
BEGIN
    IF NOT pg_try_advisory_xact_lock(1398361667, 2) THEN
        RAISE EXCEPTION 'another syncpipe merge or member pipeline is running on this database'
            USING ERRCODE = 'lock_not_available';
    END IF;
    -- Memory for the hash joins and sorts of a big run (restored when the function returns).
    PERFORM set_config('work_mem', coalesce(p_options ->> 'work_mem', '128MB'), true);
    IF NOT v_dry AND v_log IS NULL THEN
        INSERT INTO public.unified_merge_logs (run_kind) VALUES ('member_pipeline')
        RETURNING id INTO v_log;
    END IF;

    BEGIN
        PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_member_pages', 'sp_member_elems',
            'sp_names_in', 'sp_contacts_in', 'sp_member_contacts', 'sp_members', 'sp_member_dups',
            'sp_gone', 'sp_member_changed']);
        PERFORM syncpipe_internal.merge_phase('explode_members');

        -- (through the index of unsynced pages, a bitmap scan, however many they are: with
        -- no statistics, or those of a load before the last run, the planner takes half the
        -- pages or all of them for unsynced, and read all 300 MB of a million members' pages
        -- to find the 1% a load added: 0.1 s from the OS cache, 5 s from the disk; where all
        -- are unsynced, the bitmap reads every page in order, as a scan of the table would)
        PERFORM set_config('enable_seqscan', 'off', true);
        PERFORM set_config('enable_indexscan', 'off', true);
        CREATE UNLOGGED TABLE syncpipe_work.sp_member_pages AS
            SELECT research_uuid, nullif(btrim(team_id), '') AS team_id, team_members,
                   updated_at  -- the version read: only that version is marked synced below
            FROM bronze.company_info_raw
            WHERE NOT members_synced OR v_rescan;
        GET DIAGNOSTICS v_pages = ROW_COUNT;
        PERFORM set_config('enable_seqscan', v_seqscan, true);
        PERFORM set_config('enable_indexscan', v_indexscan, true);
        -- Its size, for the joins below (the JSON column left out: no need to read it).
        PERFORM syncpipe_internal.work_analyze('sp_member_pages', ARRAY['research_uuid']);

        CREATE UNLOGGED TABLE syncpipe_work.sp_member_elems AS
            SELECT row_number() OVER () AS eid, p.research_uuid, p.team_id,
                   e.pos::integer AS pos, e.m AS raw
            FROM sp_member_pages p
            CROSS JOIN LATERAL jsonb_array_elements(p.team_members) WITH ORDINALITY AS e(m, pos)
            WHERE jsonb_typeof(e.m) = 'object';
        GET DIAGNOSTICS v_objects = ROW_COUNT;
        SELECT coalesce(sum(jsonb_array_length(team_members)), 0) INTO v_elements
        FROM sp_member_pages;

        CREATE UNLOGGED TABLE syncpipe_work.sp_names_in AS
            SELECT eid AS uid, nullif(btrim(CASE
                       WHEN jsonb_typeof(raw -> 'name') = 'string' THEN raw ->> 'name'
                       WHEN jsonb_typeof(raw -> 'full_name') = 'string' THEN raw ->> 'full_name'
                   END), '') AS raw
            FROM sp_member_elems;
        -- Each member against the four contact fields, the elements unnested in the select
        -- list: a per-row lateral function scan costs twice as much.
        CREATE UNLOGGED TABLE syncpipe_work.sp_contacts_in AS
        SELECT uid, kind, raw
        FROM (
            SELECT e.eid AS uid, f.kind,
                   -- (a single value read as a one-element array)
                   jsonb_array_elements_text(CASE WHEN jsonb_typeof(e.raw -> f.field) = 'array'
                                                  THEN e.raw -> f.field
                                                  ELSE jsonb_build_array(e.raw -> f.field)
                                             END) AS raw
            FROM sp_member_elems e
            CROSS JOIN (VALUES ('e'::"char", 'email'), ('e'::"char", 'emails'),
                               ('p'::"char", 'phone'), ('p'::"char", 'phones'))
                AS f(kind, field)
            WHERE jsonb_typeof(e.raw -> f.field) IN ('string', 'number', 'array')
        ) c
        WHERE raw IS NOT NULL;
        PERFORM syncpipe_internal.normalize_contacts();
        PERFORM syncpipe_internal.normalize_person_names();

        -- Each member's contacts as two arrays (one sort orders every member's values: the
        -- arrays need no sort of their own). A table of its own: as a subquery of the
        -- parallel join below, every worker sorted all of them again.
        CREATE UNLOGGED TABLE syncpipe_work.sp_member_contacts AS
            SELECT uid,
                   array_agg(value) FILTER (WHERE kind = 'e') AS emails,
                   array_agg(value) FILTER (WHERE kind = 'p') AS phones
            FROM (SELECT uid, kind, value FROM sp_contacts ORDER BY uid, kind, value) o
            GROUP BY uid;
        PERFORM syncpipe_internal.work_analyze('sp_member_contacts', ARRAY['uid']);
        CREATE UNLOGGED TABLE syncpipe_work.sp_members AS
        SELECT e.eid, e.research_uuid, e.team_id, e.pos, e.raw, n.raw AS name_raw,
               pn.name_norm, pn.name_key, pn.first_name, pn.last_name, pn.middle, pn.suffix,
               coalesce(c.emails, '{}') AS emails,
               coalesce(c.phones, '{}') AS phones,
               md5(e.research_uuid::text || '|' || coalesce(pn.name_norm, '') || '|'
                   || array_to_string(coalesce(c.emails, '{}'), ',') || '|'
                   || array_to_string(coalesce(c.phones, '{}'), ',')) AS record_hash
        FROM sp_member_elems e
        LEFT JOIN sp_names_in n ON n.uid = e.eid
        LEFT JOIN sp_person_names pn ON pn.uid = e.eid
        LEFT JOIN sp_member_contacts c ON c.uid = e.eid
        -- A member needs a name, an e-mail or a phone to be anybody.
        WHERE pn.name_norm IS NOT NULL OR c.uid IS NOT NULL;
        -- Members seen twice on one page (same name and contacts): the first one stands (found
        -- by grouping; sorting a million wide rows to find a few cost seconds).
        CREATE UNLOGGED TABLE syncpipe_work.sp_member_dups AS
            SELECT record_hash, min(pos) AS first_pos, count(*) AS n
            FROM sp_members GROUP BY record_hash HAVING count(*) > 1;
        SELECT count(*) INTO v_usable FROM sp_members;
        SELECT v_usable - coalesce(sum(n - 1), 0) INTO v_distinct FROM sp_member_dups;
        PERFORM syncpipe_internal.work_analyze('sp_member_dups');

        PERFORM syncpipe_internal.merge_phase('store_members');
        -- Members of the pages read that are no longer on them. (A few pages of many: their
        -- members page by page through the index, where the planner would read every member;
        -- a large share of the pages: one join.)
        EXECUTE format($q$
            CREATE UNLOGGED TABLE syncpipe_work.sp_gone AS
            SELECT m.id
            FROM sp_member_pages p
            CROSS JOIN LATERAL (SELECT x.id, x.record_hash FROM public.unified_company_member x
                                WHERE x.research_uuid = p.research_uuid %s) m
            WHERE NOT EXISTS (SELECT 1 FROM sp_members s WHERE s.record_hash = m.record_hash)
            $q$,
            -- (OFFSET 0 keeps the subquery per page; without it, it is a plain join)
            -- (the table's size from the statistics system when it was never analyzed:
            -- reltuples is then -1, and a few pages would read every member; and where that
            -- knows nothing either, as in a copy made by CREATE DATABASE ... TEMPLATE or a
            -- restored dump with autovacuum off, its blocks: a row per block at least; not
            -- syncpipe_internal.table_rows(), whose guess from the column types makes this
            -- table of wide rows nine times its size, where bulk mode wants a size erring high)
            CASE WHEN v_pages < 0.05 * (SELECT greatest(reltuples, pg_stat_get_live_tuples(oid),
                                                        pg_relation_size(oid)
                                                        / current_setting('block_size')::bigint)
                                        FROM pg_class
                                        WHERE oid = 'bronze.company_info_raw'::regclass)
                 THEN 'OFFSET 0' ELSE '' END);
        GET DIAGNOSTICS v_removed = ROW_COUNT;

        IF NOT v_dry THEN
            -- What goes in: members not stored yet, each once. (Decided before the insert: an
            -- anti-join against the table being written would re-read every row it inserts.)
            DELETE FROM sp_members s USING sp_member_dups d
            WHERE d.record_hash = s.record_hash AND d.first_pos <> s.pos;
            DELETE FROM sp_members s USING public.unified_company_member m
            WHERE m.record_hash = s.record_hash;
            -- A member gone from a re-read page and a new one of the same name on it are one
            -- member whose e-mail or phone changed: its row is updated in place, a changed
            -- record its agent keeps (as a feed row's is), not one who left (leaving an agent
            -- without a record) and a stranger who came (a new agent).
            IF v_removed > 0 THEN
                CREATE UNLOGGED TABLE syncpipe_work.sp_member_changed AS
                SELECT g.id, s.eid
                FROM (SELECT m.id, m.research_uuid, m.name_normalized,
                             row_number() OVER (PARTITION BY m.research_uuid, m.name_normalized
                                                ORDER BY m.member_position, m.id) AS k
                      FROM sp_gone g JOIN public.unified_company_member m ON m.id = g.id
                      WHERE m.name_normalized IS NOT NULL) g
                JOIN (SELECT s.eid, s.research_uuid, s.name_norm,
                             row_number() OVER (PARTITION BY s.research_uuid, s.name_norm
                                                ORDER BY s.pos) AS k
                      FROM sp_members s WHERE s.name_norm IS NOT NULL) s
                  ON s.research_uuid = g.research_uuid AND s.name_norm = g.name_normalized
                 AND s.k = g.k;
                UPDATE public.unified_company_member m
                SET team_id = s.team_id, member_name = s.name_raw, name_normalized = s.name_norm,
                    name_key = s.name_key, name_first = s.first_name, name_last = s.last_name,
                    name_middle = s.middle, name_suffix = s.suffix, email_normalized = s.emails,
                    phone_normalized = s.phones, record_hash = s.record_hash, member_raw = s.raw,
                    member_position = s.pos, processed = false
                FROM sp_member_changed c JOIN sp_members s ON s.eid = c.eid
                WHERE m.id = c.id;
                GET DIAGNOSTICS v_changed = ROW_COUNT;
                DELETE FROM sp_gone g USING sp_member_changed c WHERE g.id = c.id;
                DELETE FROM sp_members s USING sp_member_changed c WHERE s.eid = c.eid;
                v_removed := v_removed - v_changed;
            END IF;
            -- (a trigger forgets their lineage: syncpipe_internal.forget_deleted_sources)
            DELETE FROM public.unified_company_member
            WHERE id IN (SELECT id FROM sp_gone);

            -- A big first run writes without indexes and builds them after (bulk mode; by
            -- the rows that go in: a rescan re-reads every page and writes few).
            v_bulk := syncpipe_internal.merge_bulk_begin('public.unified_company_member',
                                                         (SELECT count(*) FROM sp_members), true);
            INSERT INTO public.unified_company_member (
                research_uuid, team_id, member_name, name_normalized, name_key, name_first,
                name_last, name_middle, name_suffix, email_normalized, phone_normalized,
                record_hash, member_raw, member_position, processed)
            SELECT research_uuid, team_id, name_raw, name_norm, name_key, first_name,
                   last_name, middle, suffix, emails, phones, record_hash, raw, pos, v_follows
            FROM sp_members;
            GET DIAGNOSTICS v_inserted = ROW_COUNT;
            IF v_bulk THEN
                PERFORM syncpipe_internal.merge_bulk_end('public.unified_company_member');
            END IF;

            UPDATE bronze.company_info_raw c SET members_synced = true
            FROM sp_member_pages p
            WHERE c.research_uuid = p.research_uuid AND NOT c.members_synced
              -- a page a load changed meanwhile stays unsynced for the next run
              AND c.updated_at = p.updated_at;
        ELSE
            SELECT count(DISTINCT s.record_hash) INTO v_inserted
            FROM sp_members s
            WHERE NOT EXISTS (SELECT 1 FROM public.unified_company_member m
                              WHERE m.record_hash = s.record_hash);
        END IF;

        v_counts := jsonb_build_object(
            'pages', v_pages,
            'elements', v_elements,
            'members', v_usable,
            'inserted', v_inserted,
            'unchanged', v_distinct - v_inserted - v_changed,
            'changed', v_changed,
            'removed', v_removed,
            'duplicates', v_usable - v_distinct,
            'skipped_not_object', v_elements - v_objects,
            'skipped_empty', v_objects - v_usable);

        IF NOT v_dry THEN
            UPDATE public.unified_merge_logs
            SET status = 'success', finished_at = clock_timestamp(), total_processed = v_pages,
                counts = v_counts
            WHERE id = v_log;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        IF v_dry OR v_log IS NULL THEN
            RAISE;
        END IF;
        -- Everything above was rolled back with the block; only the log row stays.
        UPDATE public.unified_merge_logs
        SET status = 'failed', finished_at = clock_timestamp(), error_message = SQLERRM
        WHERE id = v_log;
        RETURN jsonb_build_object('status', 'failed', 'log_id', v_log, 'error', SQLERRM,
                                  'sqlstate', SQLSTATE);
    END;

    IF NOT v_keep THEN
        PERFORM syncpipe_internal.merge_work_clear();
    END IF;
    RETURN v_counts || jsonb_build_object(
        'status', 'success', 'log_id', v_log, 'dry_run', v_dry,
        'seconds', round(extract(epoch FROM clock_timestamp() - v_started)::numeric, 3));
END;
$$;

REVOKE EXECUTE ON FUNCTION public.run_unified_member_pipeline(jsonb) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.run_unified_member_pipeline(jsonb) TO service_role;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
