-- When source rows are deleted (by hand, or by the cascade from a deleted team page), their
-- lineage goes with them and their agents are refreshed by the next merge. (Runs as its
-- owner: service_role deletes source rows through the API without any right on the internal
-- schema.)
CREATE OR REPLACE FUNCTION syncpipe_internal.forget_deleted_sources()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF TG_TABLE_NAME = 'new_agents' THEN
        PERFORM syncpipe_internal.merge_forget_records(
            'new_agents', ARRAY(SELECT supabase_uuid::text FROM deleted_rows));
    ELSE
        PERFORM syncpipe_internal.merge_forget_records(
            'company_member', ARRAY(SELECT id::text FROM deleted_rows));
    END IF;
    RETURN NULL;
END;
$$;

-- Lineage deleted while its source row stays (by hand: "match this record again"): the row is
-- marked changed, so the next merge reads it again (it reads only rows changed since its last
-- complete run, sql/ddl/120). Lineage that goes with its source row finds no row to mark.
-- (Runs as its owner, as forget_deleted_sources() does.)
CREATE OR REPLACE FUNCTION syncpipe_internal.lineage_forgotten()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    UPDATE public.new_agents a SET changed_xid = pg_current_xact_id()
    FROM gone_rows g
    WHERE g.source = 'new_agents'
      AND a.supabase_uuid = CASE
          WHEN g.source_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
          THEN g.source_id::uuid END;
    UPDATE public.unified_company_member m SET changed_xid = pg_current_xact_id()
    FROM gone_rows g
    WHERE g.source = 'company_member'
      AND m.id = CASE WHEN g.source_id ~ '^[0-9]{1,18}$' THEN g.source_id::bigint END;
    RETURN NULL;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
