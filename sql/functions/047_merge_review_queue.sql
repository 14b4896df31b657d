-- The merge's review queue (merge_apply(), sql/functions/040_merge.sql).

-- Phase "review_queue": the run's doubtful pairs between different agents, queued with each
-- side as a person needs it to decide, unless a person already decided about the two agents.
--   reads:   sp_meta, sp_review, sp_pkeys, sp_place, sp_comp, sp_target;
--            public.new_unified_agents, public.merge_decisions
--   writes:  public.merge_review_queue
--   options: none
--   returns: the number of items queued
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_review_write()
RETURNS integer
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_offset   bigint := (SELECT node_offset FROM sp_meta);
    v_reviews  integer;
BEGIN
    -- Doubtful pairs between different agents go to review, unless a person already
    -- decided about these two agents.
    -- Each side as a person needs it to decide: the record's (or the agent's) name, team,
    -- e-mails, phones and source, on the side of its agent (a = the lower agent id).
    WITH ends AS (
        SELECT DISTINCT node FROM (SELECT a AS node FROM sp_review UNION ALL
                                   SELECT b FROM sp_review) e
    ),
    pkeys AS (
        SELECT pid, array_agg(value ORDER BY value) FILTER (WHERE kind = 'e') AS emails,
               array_agg(value ORDER BY value) FILTER (WHERE kind = 'p') AS phones
        FROM sp_pkeys
        WHERE pid IN (SELECT node - v_offset FROM ends WHERE node >= v_offset)
        GROUP BY pid
    ),
    -- (a known agent this run joined into another is shown as that survivor: an item must
    -- name agents that still exist, or nobody can decide it)
    side AS (
        -- (pending records and known agents apart: each end probes only its own tables;
        -- in one query every end probed the agents too, two seconds at 1M persons)
        SELECT e.node, x.agent_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'agent_id', x.agent_id, 'source', coalesce(x.source, 'agent'),
                   'source_id', x.source_id, 'name', x.full_name, 'team_id', x.team_id,
                   'emails', to_jsonb(k.emails), 'phones', to_jsonb(k.phones))) AS doc
        FROM ends e
        LEFT JOIN sp_place x ON x.pid = e.node - v_offset
        LEFT JOIN pkeys k ON k.pid = e.node - v_offset
        WHERE e.node >= v_offset
        UNION ALL
        SELECT e.node, g.agent_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'agent_id', g.agent_id, 'source', 'agent', 'name', g.full_name,
                   'team_id', g.source_team_id, 'emails', to_jsonb(g.emails),
                   'phones', to_jsonb(g.phone_numbers), 'sources', g.source_count)) AS doc
        FROM ends e
        LEFT JOIN sp_comp c ON c.node = e.node
        LEFT JOIN sp_target t ON t.label = c.label
        LEFT JOIN public.new_unified_agents g ON g.agent_id = coalesce(t.survivor, e.node)
        WHERE e.node < v_offset
    ),
    pairs AS (
        SELECT DISTINCT ON (least(sa.agent_id, sb.agent_id), greatest(sa.agent_id, sb.agent_id))
               least(sa.agent_id, sb.agent_id) AS agent_id,
               greatest(sa.agent_id, sb.agent_id) AS candidate_agent_id,
               v.rule, v.conf, (v.evidence ->> 'weight')::real AS weight,
               (v.evidence - 'a_name' - 'b_name') || jsonb_build_object('rule', v.rule,
                   'a', CASE WHEN sa.agent_id < sb.agent_id THEN sa.doc ELSE sb.doc END,
                   'b', CASE WHEN sa.agent_id < sb.agent_id THEN sb.doc ELSE sa.doc END)
               || CASE WHEN v.evidence ? 'a_name' THEN jsonb_build_object(
                   'a_name', CASE WHEN sa.agent_id < sb.agent_id THEN v.evidence -> 'a_name'
                                  ELSE v.evidence -> 'b_name' END,
                   'b_name', CASE WHEN sa.agent_id < sb.agent_id THEN v.evidence -> 'b_name'
                                  ELSE v.evidence -> 'a_name' END) ELSE '{}' END AS evidence
        FROM sp_review v
        JOIN side sa ON sa.node = v.a
        JOIN side sb ON sb.node = v.b
        WHERE sa.agent_id <> sb.agent_id
        ORDER BY least(sa.agent_id, sb.agent_id), greatest(sa.agent_id, sb.agent_id),
                 v.conf DESC, (v.evidence ->> 'weight')::numeric DESC NULLS LAST, v.a, v.b,
                 -- (a name link held back and a candidate of the same two records can weigh
                 -- the same: the rule decides, not the order rows arrive in)
                 v.rule
    )
    INSERT INTO public.merge_review_queue (agent_id, candidate_agent_id, rule, confidence,
                                           evidence, weight)
    SELECT p.agent_id, p.candidate_agent_id, p.rule, p.conf, p.evidence, p.weight
    FROM pairs p
    -- (NOT IN: the decisions are read once, as a hashed set, not once per pair)
    WHERE (p.agent_id, p.candidate_agent_id) NOT IN (
        SELECT d.agent_low, d.agent_high FROM syncpipe_internal.merge_decisions_now() d)
    ON CONFLICT ((least(agent_id, candidate_agent_id)), (greatest(agent_id, candidate_agent_id)))
        WHERE status = 'open' DO NOTHING;
    GET DIAGNOSTICS v_reviews = ROW_COUNT;
    RETURN v_reviews;
END;
$$;

-- Phase "review_queue", second part: across runs, too, an agent keeps only its
-- review_per_record strongest open similar-name items: what one run over all the records
-- keeps, and not what piles up when records arrive over many runs (or batches) and each run
-- adds its own strongest to the last's.
--   reads:   public.merge_review_queue (the open fuzzy_name items of agents given one now)
--   writes:  public.merge_review_queue (the weaker items removed);
--            public.merge_dirty_agents (their agents: review flags refreshed with the golden
--                        records)
--   options: review_per_record (3)
--   returns: {"removed_new": items of this run removed, "superseded": earlier items removed}
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_review_cap(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_per_record integer := coalesce((p_options ->> 'review_per_record')::integer, 3);
    v_counts     jsonb;
BEGIN
    -- (one pass over the open similar-name items, each seen from both its agents: no join
    -- back to the queue per touched agent, whose estimate is stale right after the insert)
    WITH sides AS (
        SELECT q.id, q.weight, q.agent_id AS side, q.created_at = now() AS new
        FROM public.merge_review_queue q
        WHERE q.status = 'open' AND q.rule = 'fuzzy_name'
        UNION ALL
        SELECT q.id, q.weight, q.candidate_agent_id, q.created_at = now()
        FROM public.merge_review_queue q
        WHERE q.status = 'open' AND q.rule = 'fuzzy_name'
    ),
    ranked AS (
        SELECT id, row_number() OVER w AS rk, bool_or(new) OVER (PARTITION BY side) AS touched
        FROM sides
        WINDOW w AS (PARTITION BY side ORDER BY weight DESC NULLS LAST, id)
    ),
    gone AS (
        DELETE FROM public.merge_review_queue q
        WHERE q.id IN (SELECT id FROM ranked WHERE touched AND rk > v_per_record)
        RETURNING q.agent_id, q.candidate_agent_id, q.created_at = now() AS new
    ),
    dirty AS (
        INSERT INTO public.merge_dirty_agents (agent_id)
        SELECT agent_id FROM gone UNION SELECT candidate_agent_id FROM gone
        ON CONFLICT (agent_id) DO NOTHING
    )
    SELECT jsonb_build_object('removed_new', count(*) FILTER (WHERE new),
                              'superseded', count(*) FILTER (WHERE NOT new))
    INTO v_counts FROM gone;
    RETURN v_counts;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
