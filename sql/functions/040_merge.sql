-- run_unified_merge_batch(): resolve new_agents and company members into the master table.
--
-- Set-based from start to end (no row-by-row loops): pending records, new or changed since
-- they were last matched, are normalized in bulk; their contact keys and names are joined
-- with each other and with the agents already known; the links go through the ladder of
-- DESIGN.md:
--
--   email       (100)  share a normalized e-mail          } above the threshold (70): merged
--   phone        (90)  share a normalized phone           }   automatically, transitively
--   name_team    (80)  same normalized name and team      }
--   nickname_team (80) known nickname, same family name and team }
--   fuzzy_name   (60)  similar name in the team (typo, nickname, initial, missing part), or
--                       the same rare name beyond it -> review queue, ranked by weight
--
-- Contact evidence is judged per pair of holders: an e-mail or phone seen with the names of
-- different people (an office line, info@) links only holders whose names fit each other,
-- never through a name that fits two people (on one key, nor across two: merge_split_bridges). A differing "Jr." never matches. Every link and
-- review item carries a match weight (Fellegi-Sunter style log2 m/u, names adjusted by their
-- frequency; sql/functions/035_weights.sql); name links whose own phones or e-mails differ go
-- to review instead of merging. Options: review_min_weight (12), review_per_record (3).
--
-- Incremental and stable: existing agents keep their ids and new records join them (an agent
-- is found through its contact keys (merge_agent_contacts) and through the names in its
-- lineage); when new evidence joins two agents the lower id survives and the other is retired
-- with merged_into. p_options (all optional): auto_threshold, confidence_email,
-- confidence_phone, confidence_name_team, confidence_fuzzy_name, fuzzy_similarity, dry_run,
-- log_id, work_mem, limit (pending records taken by this batch; the rest wait), rescan (look
-- at every source row for pending records, not only those changed since the last complete
-- run: sql/ddl/120), keep_work
-- (leave the work tables, schema syncpipe_work, for the caller to read and then drop with
-- merge_work_clear() before the transaction ends: the pairs of a dry run).
--
-- Graph nodes: an existing agent is its agent_id; a pending record is node_offset + pid.
--
-- One function per phase, each reading and writing work tables (UNLOGGED, schema
-- syncpipe_work, named sp_*; its header lists them and the options it reads), so that each can
-- be run and tested on its own. In the order merge_plan() and merge_apply() below call them,
-- with the phase names the progress display shows ("syncpipe.phase" notices):
--
--   merge_plan: work out what a run would do (nothing permanent written)
--     pending          merge_pending            041_merge_records.sql   sp_meta, sp_canon, sp_pend
--     normalize        merge_normalize                                  sp_pkeys, sp_person_names
--     candidates       merge_candidates                                 sp_keyrecs, sp_names
--     shared_contacts  merge_name_counts        042_merge_evidence.sql  sp_freq
--                      merge_contact_evidence                           sp_shared, sp_keyholders, ...
--     links            merge_name_links                                 sp_namelinks (weights)
--                      merge_links                                      sp_links
--     clusters         merge_clusters           043_merge_clusters.sql  sp_comp, sp_compconf
--     review           merge_review_candidates  044_merge_review.sql    sp_cnames, sp_cands
--                      merge_candidate_weights                          sp_candkeys, sp_candw
--                      merge_review_pairs                               sp_review
--   merge_apply: write it
--     agents           merge_agents             045_merge_agents.sql    sp_target, sp_place, agents
--     lineage          merge_lineage            046_merge_lineage.sql   unified_agent_sources
--     review_queue     merge_review_write       047_merge_review_queue.sql  merge_review_queue
--     golden_records   merge_golden_records     045_merge_agents.sql    golden records

-- Forget source records that no longer exist; their agents are refreshed by the next merge.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_forget_records(p_source text, p_ids text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count integer;
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO public.merge_dirty_agents (agent_id)
    SELECT DISTINCT agent_id FROM public.unified_agent_sources
    WHERE source = p_source AND source_id = ANY(p_ids)
    ON CONFLICT DO NOTHING;
    DELETE FROM public.unified_agent_sources WHERE source = p_source AND source_id = ANY(p_ids);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Plan: work out what a run would do, into work tables (nothing permanent written).
--   options: those of its phases; returns the plan's counts
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_plan(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_auto    integer := coalesce((p_options ->> 'auto_threshold')::integer, 70);
    v_offset  bigint;
    v_rounds  integer;
    v_components     bigint;
    v_components_new bigint;
BEGIN
    PERFORM syncpipe_internal.merge_phase('pending');
    PERFORM syncpipe_internal.merge_pending(p_options);
    PERFORM syncpipe_internal.merge_phase('normalize');
    PERFORM syncpipe_internal.merge_normalize();
    PERFORM syncpipe_internal.merge_phase('candidates');
    PERFORM syncpipe_internal.merge_candidates();
    PERFORM syncpipe_internal.merge_phase('shared_contacts');
    PERFORM syncpipe_internal.merge_name_counts();
    PERFORM syncpipe_internal.merge_contact_evidence();
    PERFORM syncpipe_internal.merge_phase('links');
    PERFORM syncpipe_internal.merge_name_links();
    PERFORM syncpipe_internal.merge_links(p_options);
    PERFORM syncpipe_internal.merge_phase('clusters');
    v_rounds := syncpipe_internal.merge_clusters(p_options);
    PERFORM syncpipe_internal.merge_phase('review');
    PERFORM syncpipe_internal.merge_review_candidates();
    PERFORM syncpipe_internal.merge_candidate_weights();
    PERFORM syncpipe_internal.merge_review_pairs(p_options);

    v_offset := (SELECT node_offset FROM sp_meta);
    -- (a component's label is its smallest node, itself in sp_comp: one row per component
    -- has node = label, so the components are counted without a sort)
    SELECT count(*), count(*) FILTER (WHERE label >= v_offset)
    INTO v_components, v_components_new
    FROM sp_comp WHERE node = label;
    RETURN (SELECT jsonb_build_object(
                'pending', count(*),
                'pending_new_agents', count(*) FILTER (WHERE source = 'new_agents'),
                'pending_members', count(*) FILTER (WHERE source = 'company_member'),
                'changed_records', count(*) FILTER (WHERE old_agent IS NOT NULL))
            FROM sp_pend) || jsonb_build_object(
        -- every source row read (all), or those changed since the last complete run's mark
        'pending_scan', (SELECT CASE WHEN pending_from IS NULL THEN 'all' ELSE 'changed' END
                         FROM sp_meta),
        'shared_contacts', (SELECT count(*) FROM sp_shared),
        'links', coalesce((SELECT jsonb_object_agg(rule, n) FROM (
                     SELECT rule, count(*) AS n FROM sp_links WHERE conf > v_auto
                     GROUP BY rule) r), '{}'),
        'automatic_links', (SELECT count(*) FROM sp_gedges),
        'review_pairs', (SELECT count(*) FROM sp_review),
        'name_links_held_for_review', (SELECT count(*) FROM sp_namelinks WHERE conflict),
        'components', v_components,
        -- a component labelled by a pending node holds no existing agent: a new agent
        'agents_new', v_components_new,
        'rounds', v_rounds);
END;
$$;

-- Apply: write what merge_plan() worked out.
--   options: those of its phases; returns the counts of what was written
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_apply(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_agents   jsonb;
    v_lineage  jsonb;
    v_reviews  integer;
    v_cap      jsonb;
    v_golden   integer;
BEGIN
    PERFORM syncpipe_internal.merge_phase('agents');
    v_agents := syncpipe_internal.merge_agents(p_options);
    PERFORM syncpipe_internal.merge_phase('lineage');
    v_lineage := syncpipe_internal.merge_lineage();
    PERFORM syncpipe_internal.merge_phase('review_queue');
    v_reviews := syncpipe_internal.merge_review_write();
    v_cap := syncpipe_internal.merge_review_cap(p_options);
    PERFORM syncpipe_internal.merge_phase('golden_records');
    v_golden := syncpipe_internal.merge_golden_records();

    RETURN jsonb_build_object(
        'records_matched', v_lineage -> 'records_matched',
        'agents_created', v_agents -> 'agents_created',
        'agents_joined', v_agents -> 'agents_joined',
        'agents_retired', v_agents -> 'agents_retired',
        'agents_refreshed', v_golden,
        'review_items_added', v_reviews - (v_cap ->> 'removed_new')::integer,
        'review_items_superseded', (v_cap ->> 'superseded')::integer,
        'bulk', (v_agents ->> 'bulk')::boolean OR (v_lineage ->> 'bulk')::boolean,
        'links_applied', coalesce((SELECT jsonb_object_agg(rule, n) FROM (
            SELECT rule, count(*) AS n FROM sp_place GROUP BY rule) r), '{}'));
END;
$$;

CREATE OR REPLACE FUNCTION public.run_unified_merge_batch(p_options jsonb DEFAULT '{}')
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
    v_dry     boolean := coalesce((p_options ->> 'dry_run')::boolean, false);
    v_keep    boolean := coalesce((p_options ->> 'keep_work')::boolean, false);
    v_log     bigint := (p_options ->> 'log_id')::bigint;
    v_started timestamptz := clock_timestamp();
    v_context text;
    v_plan    jsonb;
    v_apply   jsonb := '{}';
    v_merging text := current_setting('syncpipe.merging', true);
BEGIN
    IF NOT pg_try_advisory_xact_lock(1398361667, 2) THEN
        RAISE EXCEPTION 'another syncpipe merge or member pipeline is running on this database'
            USING ERRCODE = 'lock_not_available';
    END IF;
    -- Hash joins and sorts over millions of rows need memory (the server default, 4 MB, makes
    -- them spill and choose poor plans); restored when the function returns.
    PERFORM set_config('work_mem', coalesce(p_options ->> 'work_mem', '128MB'), true);
    PERFORM set_config('pg_trgm.similarity_threshold',
                       coalesce(p_options ->> 'fuzzy_similarity', '0.6'), true);
    -- The merge keeps the agents' contact keys in step itself (merge_contacts_sync): the row
    -- trigger that follows edits by hand (sql/triggers/030) stays off for its own updates of
    -- hundreds of agents. (Set and put back here: a SET clause of a custom setting needs a
    -- superuser to create the function.)
    PERFORM set_config('syncpipe.merging', 'on', true);
    IF NOT v_dry THEN
        IF v_log IS NULL THEN
            INSERT INTO public.unified_merge_logs (run_kind) VALUES ('merge') RETURNING id INTO v_log;
        END IF;
        -- Holding the lock, an older "running" row is a run whose client was lost (a newer
        -- one belongs to a run still waiting for the lock).
        UPDATE public.unified_merge_logs
        SET status = 'failed', finished_at = clock_timestamp(),
            error_message = 'interrupted: the client was lost before the run finished'
        WHERE status = 'running' AND id < v_log AND run_kind = 'merge';
    END IF;

    BEGIN
        -- (agents retired by hand take their records and review items to their survivor
        -- first, so that the plan matches no record to them, and the lineage of records
        -- deleted while an earlier run wrote it goes: not in a dry run, which writes nothing)
        IF NOT v_dry THEN
            PERFORM syncpipe_internal.merge_adopt_retired();
            PERFORM syncpipe_internal.merge_forget_gone();
        END IF;
        v_plan := syncpipe_internal.merge_plan(p_options);
        IF NOT v_dry THEN
            v_apply := syncpipe_internal.merge_apply(p_options);
            -- where the next run starts looking for pending records (sql/ddl/120)
            PERFORM syncpipe_internal.merge_store_mark(v_log);
            UPDATE public.unified_merge_logs
            SET status = 'success', finished_at = clock_timestamp(),
                total_processed = (v_plan ->> 'pending')::integer,
                counts = v_plan || v_apply
            WHERE id = v_log;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        IF v_dry OR v_log IS NULL THEN
            RAISE;
        END IF;
        -- (where it failed: a lock wait's says which table's row it waited for)
        GET STACKED DIAGNOSTICS v_context = PG_EXCEPTION_CONTEXT;
        UPDATE public.unified_merge_logs
        SET status = 'failed', finished_at = clock_timestamp(), error_message = SQLERRM
        WHERE id = v_log;
        PERFORM set_config('syncpipe.merging', coalesce(v_merging, ''), true);
        RETURN jsonb_build_object('status', 'failed', 'log_id', v_log, 'error', SQLERRM,
                                  'sqlstate', SQLSTATE, 'context', left(v_context, 2000));
    END;

    IF NOT v_keep THEN
        PERFORM syncpipe_internal.merge_work_clear();
    END IF;
    PERFORM set_config('syncpipe.merging', coalesce(v_merging, ''), true);
    RETURN v_plan || v_apply || jsonb_build_object(
        'status', CASE WHEN v_dry THEN 'planned' ELSE 'success' END,
        'dry_run', v_dry, 'log_id', v_log,
        'seconds', round(extract(epoch FROM clock_timestamp() - v_started)::numeric, 3));
END;
$$;

-- A person's decision on a review item: accept merges the two agents (the lower id survives),
-- reject records that they are different people. Either is kept for every later run.
-- An item whose agents changed since it was queued (or since the last refusal) is not
-- decided: the answer is {"refused": true, "changes": [what changed, in words], ...} and the
-- same call again, once a person has looked at the item in its new state, decides it.
CREATE OR REPLACE FUNCTION public.review_decide(p_review_id bigint, p_decision text,
                                               p_decided_by text)
RETURNS jsonb
LANGUAGE plpgsql
-- Runs as its owner (who deployed it): service_role calls it by RPC without any right on
-- the internal schemas it works in.
SECURITY DEFINER
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_item     public.merge_review_queue;
    v_a        bigint;
    v_b        bigint;
    v_survivor bigint;
    v_seen     jsonb;
    v_changes  text[];
    v_same     bigint;
BEGIN
    IF p_decision NOT IN ('accept', 'reject') THEN
        RAISE EXCEPTION 'a review decision is accept or reject, not %', p_decision
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(1398361667, 2) THEN
        RAISE EXCEPTION 'a merge is running; decide again when it has finished'
            USING ERRCODE = 'lock_not_available';
    END IF;
    SELECT * INTO v_item FROM public.merge_review_queue WHERE id = p_review_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'review item % does not exist (a later merge or decision may have settled it and taken it off the queue)',
            p_review_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_item.status <> 'open' THEN
        RAISE EXCEPTION 'review item % was already %: by % at %', p_review_id, v_item.status,
            v_item.decided_by, v_item.decided_at USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (the item's agents locked first: an edit of them in another session is waited for,
    -- up to the caller's lock_timeout, and then seen by the statements below)
    PERFORM 1 FROM public.new_unified_agents
    WHERE agent_id IN (v_item.agent_id, v_item.candidate_agent_id)
    ORDER BY agent_id FOR UPDATE;
    v_a := syncpipe_internal.agent_now(v_item.agent_id);
    v_b := syncpipe_internal.agent_now(v_item.candidate_agent_id);
    IF v_a IS NULL OR v_b IS NULL THEN
        RAISE EXCEPTION 'review item % cannot be decided: the merged_into of agent % leads to no active agent (a cycle, or a chain of over 100 agents); set it to an active agent, or to NULL, first',
            p_review_id, CASE WHEN v_a IS NULL THEN v_item.agent_id
                              ELSE v_item.candidate_agent_id END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- An agent of the item retired outside a merge (by hand, through the API: a merge moves
    -- the items of the agents it retires itself) is retired now as a merge retires one: its
    -- lineage and its open items follow it to its survivor. The item then names the survivor
    -- (and the decision below is refused once, saying so), or it is settled: it joins an
    -- agent to itself, or two agents a person told apart.
    IF v_a IS DISTINCT FROM v_item.agent_id OR v_b IS DISTINCT FROM v_item.candidate_agent_id THEN
        PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_retire']);
        CREATE UNLOGGED TABLE syncpipe_work.sp_retire AS
            SELECT r.agent_id, r.survivor
            FROM (VALUES (v_item.agent_id, v_a), (v_item.candidate_agent_id, v_b))
                 AS r(agent_id, survivor)
            WHERE r.agent_id <> r.survivor;
        PERFORM syncpipe_internal.merge_retire_agents();
        -- (the survivors' stored records take their new records, contacts and review flags)
        PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_refresh']);
        CREATE UNLOGGED TABLE syncpipe_work.sp_refresh AS
            SELECT DISTINCT survivor AS agent_id FROM sp_retire;
        PERFORM syncpipe_internal.merge_refresh_agents();
        PERFORM syncpipe_internal.merge_work_clear();
        SELECT * INTO v_item FROM public.merge_review_queue WHERE id = p_review_id;
        IF NOT FOUND THEN
            -- (taken off the queue as a merge takes it: it joins an agent to itself, or two
            -- agents a person told apart, or another open item holds the same pair)
            SELECT min(q.id) INTO v_same
            FROM public.merge_review_queue q
            WHERE q.status = 'open' AND v_a <> v_b
              AND least(q.agent_id, q.candidate_agent_id) = least(v_a, v_b)
              AND greatest(q.agent_id, q.candidate_agent_id) = greatest(v_a, v_b);
            RETURN jsonb_build_object('id', p_review_id, 'decision', p_decision,
                                      'settled', true, 'agent_id', v_a,
                                      'candidate_agent_id', v_b, 'same_as', v_same,
                                      'reason', CASE
                                          WHEN v_a = v_b THEN 'both sides are one agent now'
                                          WHEN v_same IS NOT NULL THEN format(
                                              'it compares the same agents as review item %s now',
                                              v_same)
                                          ELSE 'a person told the two apart already' END);
        END IF;
    END IF;
    -- What changed since the item was queued (or since a person was last told): an agent a
    -- later merge retired into another (the item then names the survivor), records matched
    -- to either agent since. A decision on a changed item is not taken: the item is marked
    -- as seen in its new state, and the answer says what changed, so that a person looks at
    -- it again (syncpipe review) and decides again.
    v_seen := coalesce(v_item.evidence -> 'confirmed_for', v_item.evidence -> 'queued_for',
                       jsonb_build_array(v_a, v_b));
    SELECT array_agg(change ORDER BY ord) INTO v_changes
    FROM (
        SELECT 1 AS ord, format('agent %s was merged into agent %s', v_seen ->> 0, v_a) AS change
        WHERE (v_seen ->> 0)::bigint IS DISTINCT FROM v_a
        UNION ALL
        SELECT 2, format('agent %s was merged into agent %s', v_seen ->> 1, v_b)
        WHERE (v_seen ->> 1)::bigint IS DISTINCT FROM v_b
        UNION ALL
        SELECT 3 + (s.agent_id = v_b)::integer,
               format('agent %s has %s record(s) matched to it since', s.agent_id, count(*))
        FROM public.unified_agent_sources s
        WHERE s.agent_id IN (v_a, v_b)
          AND s.matched_at > coalesce((v_item.evidence ->> 'as_of')::timestamptz,
                                      v_item.created_at)
        GROUP BY s.agent_id
    ) c;
    IF v_changes IS NOT NULL THEN
        UPDATE public.merge_review_queue
        SET evidence = evidence || jsonb_build_object('as_of', now(),
                                                      'confirmed_for', jsonb_build_array(v_a, v_b))
        WHERE id = p_review_id;
        RETURN jsonb_build_object('id', p_review_id, 'decision', p_decision, 'refused', true,
                                  'changes', to_jsonb(v_changes),
                                  'agent_id', v_a, 'candidate_agent_id', v_b);
    END IF;

    UPDATE public.merge_review_queue
    SET status = CASE p_decision WHEN 'accept' THEN 'accepted' ELSE 'rejected' END,
        decided_at = now(), decided_by = p_decided_by
    WHERE id = p_review_id;
    INSERT INTO public.merge_decisions (agent_low, agent_high, decision, review_id, decided_by)
    VALUES (least(v_a, v_b), greatest(v_a, v_b),
            CASE p_decision WHEN 'accept' THEN 'accepted' ELSE 'rejected' END,
            p_review_id, p_decided_by)
    ON CONFLICT (agent_low, agent_high) DO UPDATE
    SET decision = EXCLUDED.decision, review_id = EXCLUDED.review_id,
        decided_at = EXCLUDED.decided_at, decided_by = EXCLUDED.decided_by;

    v_survivor := least(v_a, v_b);
    IF p_decision = 'accept' AND v_a <> v_b THEN
        UPDATE public.new_unified_agents s
        SET confidence_score = least(s.confidence_score, o.confidence_score)
        FROM public.new_unified_agents o
        WHERE s.agent_id = v_survivor AND o.agent_id = greatest(v_a, v_b);
        UPDATE public.unified_agent_sources SET match_rule = 'review', confidence = 100
        WHERE agent_id = greatest(v_a, v_b);
        PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_retire']);
        CREATE UNLOGGED TABLE syncpipe_work.sp_retire AS
            SELECT greatest(v_a, v_b) AS agent_id, v_survivor AS survivor;
        PERFORM syncpipe_internal.merge_retire_agents();
    END IF;
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_refresh']);
    CREATE UNLOGGED TABLE syncpipe_work.sp_refresh AS
        SELECT DISTINCT unnest(ARRAY[v_a, v_b]) AS agent_id;
    PERFORM syncpipe_internal.merge_refresh_agents();
    PERFORM syncpipe_internal.merge_work_clear();
    RETURN jsonb_build_object('id', p_review_id, 'decision', p_decision,
                              'agent_id', v_a, 'candidate_agent_id', v_b,
                              'survivor', CASE WHEN p_decision = 'accept' THEN v_survivor END);
END;
$$;

REVOKE EXECUTE ON FUNCTION public.run_unified_merge_batch(jsonb) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.run_unified_merge_batch(jsonb) TO service_role;
REVOKE EXECUTE ON FUNCTION public.review_decide(bigint, text, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.review_decide(bigint, text, text) TO service_role;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
