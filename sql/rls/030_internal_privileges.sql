-- Least privilege for the API roles (Supabase's default privileges in `public` grant anon,
-- authenticated and service_role ALL on every new table, function and sequence there, and
-- REVOKE ... FROM PUBLIC does not take back those explicit grants). Re-applied whenever this
-- file changes; every statement here can run again.

-- The internal schemas: no privilege for any API role.
REVOKE ALL ON SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;

-- The RPC entry points in public: service_role only.
REVOKE ALL ON FUNCTION public.run_unified_member_pipeline(jsonb), public.run_unified_merge_batch(jsonb),
    public.review_decide(bigint, text, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.run_unified_member_pipeline(jsonb),
    public.run_unified_merge_batch(jsonb), public.review_decide(bigint, text, text) TO service_role;

-- Upgrade: the helpers that earlier versions kept in public (and the trigger function in
-- bronze) now live in syncpipe_internal, and the triggers point there (sql/triggers). Drop the
-- old copies; one that something else still depends on (a trigger of your own on
-- public.set_updated_at()) is kept, but no API role may call it.
DO $$
DECLARE
    v_fn regprocedure;
BEGIN
    FOR v_fn IN
        SELECT p.oid::regprocedure
        FROM pg_proc p
        WHERE (p.pronamespace = 'public'::regnamespace AND p.proname IN (
                   'merge_phase', 'merge_work_drop', 'merge_work_clear', 'merge_bulk_begin',
                   'merge_bulk_end', 'merge_allocate_ids', 'normalize_contacts',
                   'normalize_person_names', 'member_field_array', 'near_spelling',
                   'names_compatible', 'set_updated_at', 'forget_deleted_sources',
                   'merge_forget_records', 'merge_label_components', 'merge_golden',
                   'merge_contacts_sync', 'merge_refresh_agents', 'merge_retire_agents',
                   'merge_plan', 'merge_apply'))
           OR (p.pronamespace = 'bronze'::regnamespace
               AND p.proname = 'company_info_raw_track_changes')
    LOOP
        BEGIN
            EXECUTE format('DROP FUNCTION %s', v_fn);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated', v_fn);
            RAISE NOTICE 'kept % (something else depends on it); anon and authenticated may not call it', v_fn;
        END;
    END LOOP;
END;
$$;
