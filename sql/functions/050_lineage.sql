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

-- Lineage deleted, truncated or edited outside a merge (by hand: "match this record again"):
-- its records are requested again (syncpipe_internal.merge_requeue, sql/ddl/150), so the next
-- merge reads them though their rows did not change. Lineage that goes with its source row
-- asks for a record that no longer exists, which the merge finds nothing for. (Run as their
-- owner, as forget_deleted_sources() does.)
CREATE OR REPLACE FUNCTION syncpipe_internal.lineage_forgotten()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO syncpipe_internal.merge_requeue (source, source_id) VALUES ('*', '*');
    ELSE
        INSERT INTO syncpipe_internal.merge_requeue (source, source_id)
        SELECT source, source_id FROM gone_rows;
    END IF;
    RETURN NULL;
END;
$$;

-- (per row, only where a key moved or a version went back: the merge moves versions forward)
CREATE OR REPLACE FUNCTION syncpipe_internal.lineage_edited()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    INSERT INTO syncpipe_internal.merge_requeue (source, source_id)
    VALUES (OLD.source, OLD.source_id), (NEW.source, NEW.source_id);
    RETURN NULL;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
