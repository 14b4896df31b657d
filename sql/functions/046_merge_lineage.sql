-- The merge's lineage (merge_apply(), sql/functions/040_merge.sql).

-- Phase "lineage": where every pending record went, and what later runs weigh with.
--   reads:   sp_place, sp_pend, sp_keyrecs, sp_shared, sp_freq
--   writes:  public.unified_agent_sources (changed records updated in place, new ones
--            inserted; a dry run's "pending:" members never), public.unified_company_member
--            (processed), syncpipe_internal.merge_name_frequencies,
--            public.merge_shared_contacts (every key the run touched)
--   options: none
--   returns: {"records_matched", "bulk"}
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_lineage()
RETURNS jsonb
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_matched  integer;
    v_count    integer;
    v_bulk_s   boolean;
BEGIN
    -- Records matched before (changed since) are updated in place; the others are new rows,
    -- written without a per-row conflict check (a big first run drops and rebuilds the keys).
    UPDATE public.unified_agent_sources s
    SET agent_id = x.agent_id, match_rule = x.rule, confidence = x.conf,
        match_weight = x.weight, matched_at = now(),
        source_version = x.version, team_id = x.team_id, full_name = x.full_name,
        name_norm = x.name_norm, name_key = x.name_key, first_name = x.first_name,
        last_name = x.last_name, middle = x.middle, suffix = x.suffix
    FROM sp_place x
    WHERE x.old_agent IS NOT NULL AND s.source = x.source AND s.source_id = x.source_id;
    GET DIAGNOSTICS v_matched = ROW_COUNT;
    v_bulk_s := syncpipe_internal.merge_bulk_begin('public.unified_agent_sources',
                                        (SELECT count(*) FROM sp_pend), true);
    INSERT INTO public.unified_agent_sources (
        source, source_id, agent_id, match_rule, confidence, match_weight, source_version,
        team_id, full_name, name_norm, name_key, first_name, last_name, middle, suffix)
    SELECT source, source_id, agent_id, rule, conf, weight, version, team_id, full_name,
           name_norm, name_key, first_name, last_name, middle, suffix
    FROM sp_place
    WHERE old_agent IS NULL AND source_id NOT LIKE 'pending:%';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_matched := v_matched + v_count;
    IF v_bulk_s THEN
        PERFORM syncpipe_internal.merge_bulk_end('public.unified_agent_sources');
    END IF;

    -- Name frequencies, for the weights of later runs: sp_freq holds what earlier runs saw
    -- plus this run's records (merge_name_counts()), so its counts are the new totals (no
    -- second count over two million placed records).
    INSERT INTO syncpipe_internal.merge_name_frequencies AS f (part, value, records)
    SELECT part, value, n FROM sp_freq
    ON CONFLICT (part, value) DO UPDATE SET records = EXCLUDED.records
    WHERE f.records IS DISTINCT FROM EXCLUDED.records;

    -- Shared contacts, as now known for every key the run touched.
    DELETE FROM public.merge_shared_contacts s
    WHERE EXISTS (SELECT 1 FROM sp_keyrecs k
                  WHERE k.kind = s.kind AND k.value = s.value);
    -- (in the key's order: each page of the key's index is then written once, not once
    -- per row)
    INSERT INTO public.merge_shared_contacts (kind, value, records, names)
    SELECT kind, value, records, names FROM sp_shared
    ORDER BY kind, value;

    -- Members are matched in their current version (the feed is tracked by source_version).
    -- (by the pending records read unprocessed: a merge that follows the member pipeline in
    -- its transaction finds its members processed already, and a first run would otherwise
    -- read all 1M of them for nothing, 1.7 s)
    UPDATE public.unified_company_member m SET processed = true
    FROM sp_pend p
    WHERE p.unprocessed AND p.source = 'company_member' AND p.source_id NOT LIKE 'pending:%'
      AND m.id = p.source_id::bigint AND NOT m.processed;
    RETURN jsonb_build_object('records_matched', v_matched, 'bulk', v_bulk_s);
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
