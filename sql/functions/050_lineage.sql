-- When source rows are deleted (by hand, or by the cascade from a deleted team page), their
-- lineage goes with them and their agents are refreshed by the next merge.
CREATE OR REPLACE FUNCTION syncpipe_internal.forget_deleted_sources()
RETURNS trigger
LANGUAGE plpgsql
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


-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
