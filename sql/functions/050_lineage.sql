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
