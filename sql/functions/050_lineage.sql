-- When source rows are deleted or truncated (by hand, or by the cascade from a deleted or
-- truncated team page), their lineage goes with them and their agents are refreshed by the
-- next merge. They are also asked for again (syncpipe_internal.merge_requeue): a merge that
-- read them before the delete and writes their lineage after it (the lineage this trigger
-- looked for was not there yet) is followed by one that finds the source rows gone and
-- forgets them (merge_forget_gone()).
-- (Runs as its owner: service_role deletes source rows through the API without any right on
-- the internal schema.)
CREATE OR REPLACE FUNCTION syncpipe_internal.forget_deleted_sources()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_source text := CASE TG_TABLE_NAME WHEN 'new_agents' THEN 'new_agents'
                                        ELSE 'company_member' END;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- (every row of the table is gone: so is every record of its source; the lineage's
        -- own trigger asks for them again, as for a delete. A merge reading the table holds
        -- a lock that TRUNCATE waits for, so none writes their lineage after this.)
        INSERT INTO public.merge_dirty_agents (agent_id)
        SELECT DISTINCT agent_id FROM public.unified_agent_sources WHERE source = v_source
        ON CONFLICT DO NOTHING;
        DELETE FROM public.unified_agent_sources WHERE source = v_source;
        -- (members are made from the team pages: emptied, they are made again by the next
        -- merge, which reads every page; the pages said synced, and it read none)
        IF v_source = 'company_member' THEN
            UPDATE bronze.company_info_raw SET members_synced = false WHERE members_synced;
        END IF;
    ELSIF TG_TABLE_NAME = 'new_agents' THEN
        PERFORM syncpipe_internal.merge_forget_records(
            'new_agents', ARRAY(SELECT supabase_uuid::text FROM deleted_rows));
        INSERT INTO syncpipe_internal.merge_requeue (source, source_id)
        SELECT 'new_agents', supabase_uuid::text FROM deleted_rows;
    ELSE
        PERFORM syncpipe_internal.merge_forget_records(
            'company_member', ARRAY(SELECT id::text FROM deleted_rows));
        INSERT INTO syncpipe_internal.merge_requeue (source, source_id)
        SELECT 'company_member', id::text FROM deleted_rows;
    END IF;
    RETURN NULL;
END;
$$;

-- Lineage of source records asked for again (syncpipe_internal.merge_requeue) whose source
-- rows are gone: forgotten, as the delete's trigger forgets it, their agents refreshed by this
-- run. (A merge that read a record before another session deleted it writes its lineage
-- after the trigger looked for it.) Returns how many lineage rows went.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_forget_gone()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_feed    text[];
    v_members text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM syncpipe_internal.merge_requeue
                   WHERE source IN ('new_agents', 'company_member')) THEN
        RETURN 0;
    END IF;
    SELECT array_agg(s.source_id) INTO v_feed
    FROM (SELECT DISTINCT source_id FROM syncpipe_internal.merge_requeue
          WHERE source = 'new_agents') q
    JOIN public.unified_agent_sources s ON s.source = 'new_agents' AND s.source_id = q.source_id
    WHERE NOT EXISTS (
        SELECT 1 FROM public.new_agents n
        WHERE n.supabase_uuid = CASE
            WHEN q.source_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            THEN q.source_id::uuid END);
    SELECT array_agg(s.source_id) INTO v_members
    FROM (SELECT DISTINCT source_id FROM syncpipe_internal.merge_requeue
          WHERE source = 'company_member') q
    JOIN public.unified_agent_sources s
      ON s.source = 'company_member' AND s.source_id = q.source_id
    WHERE NOT EXISTS (
        SELECT 1 FROM public.unified_company_member m
        WHERE m.id = CASE WHEN q.source_id ~ '^[0-9]{1,18}$' THEN q.source_id::bigint END);
    RETURN syncpipe_internal.merge_forget_records('new_agents', v_feed)
         + syncpipe_internal.merge_forget_records('company_member', v_members);
END;
$$;

-- Lineage deleted, truncated or edited outside a merge (by hand: "match this record again"):
-- its records are requested again (syncpipe_internal.merge_requeue, sql/ddl/150), so the next
-- merge reads them though their rows did not change. Lineage that goes with its source row
-- asks for a record that no longer exists, which the merge finds nothing for. One function
-- for the three triggers (sql/triggers/020_lineage.sql): per statement on DELETE (the gone
-- rows) and TRUNCATE (every row), per row on an UPDATE that moved a key or set a version
-- back (the merge only moves versions forward). (Runs as its owner, as
-- forget_deleted_sources() does.)
CREATE OR REPLACE FUNCTION syncpipe_internal.lineage_forgotten()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO syncpipe_internal.merge_requeue (source, source_id) VALUES ('*', '*');
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO syncpipe_internal.merge_requeue (source, source_id)
        VALUES (OLD.source, OLD.source_id), (NEW.source, NEW.source_id);
    ELSE
        INSERT INTO syncpipe_internal.merge_requeue (source, source_id)
        SELECT source, source_id FROM gone_rows;
    END IF;
    RETURN NULL;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
