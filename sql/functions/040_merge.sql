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
-- never through a name that fits two people. A differing "Jr." never matches. Every link and
-- review item carries a match weight (Fellegi-Sunter style log2 m/u, names adjusted by their
-- frequency; sql/functions/035_weights.sql); name links whose own phones or e-mails differ go
-- to review instead of merging. Options: review_min_weight (12), review_per_record (3).
--
-- Incremental and stable: existing agents keep their ids and new records join them (an agent
-- is found through its contact keys (merge_agent_contacts) and through the names in its
-- lineage); when new evidence joins two agents the lower id survives and the other is retired
-- with merged_into. p_options (all optional): auto_threshold, confidence_email,
-- confidence_phone, confidence_name_team, confidence_fuzzy_name, fuzzy_similarity, dry_run,
-- log_id, work_mem, limit (pending records taken by this batch; the rest wait), keep_work
-- (leave the work tables, schema syncpipe_work, for the caller to read and then drop with
-- merge_work_clear() before the transaction ends: the pairs of a dry run).
--
-- Graph nodes: an existing agent is its agent_id; a pending record is node_offset + pid.

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

-- Connected components of sp_cc_edges(a, b) (both directions), set-based: every node first
-- takes the smallest of itself and its neighbours; then only a frontier moves on, the nodes
-- holding a label a neighbour lacks, pushing it one hop a round until no edge joins two labels
-- (most components are pairs and settle in the first step; a round costs what its frontier
-- touches, not a pass over every edge).
-- Result: sp_cc(node, label), label = the smallest node of the component.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_label_components()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_rounds integer := 0;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_cc', 'sp_cc_front', 'sp_cc_next']);
    CREATE UNLOGGED TABLE syncpipe_work.sp_cc AS
        SELECT a AS node, least(a, min(b)) AS label, count(*) AS degree
        FROM sp_cc_edges GROUP BY a;
    ALTER TABLE sp_cc ADD PRIMARY KEY (node);
    CREATE INDEX ON sp_cc_edges (a);
    ANALYZE sp_cc;
    ANALYZE sp_cc_edges;
    -- The first frontier: only a node with two or more neighbours can hold a label that a
    -- neighbour lacks (a node with one neighbour took the smaller of the two, and that
    -- neighbour holds it or a smaller one).
    CREATE UNLOGGED TABLE syncpipe_work.sp_cc_front AS
        SELECT node, label FROM sp_cc WHERE degree > 1;
    CREATE UNLOGGED TABLE syncpipe_work.sp_cc_next (node bigint, label bigint);
    LOOP
        v_rounds := v_rounds + 1;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM sp_cc_front);
        ANALYZE sp_cc_front;
        TRUNCATE sp_cc_next;
        WITH pushed AS (
            SELECT e.b AS node, min(f.label) AS label
            FROM sp_cc_front f JOIN sp_cc_edges e ON e.a = f.node
            GROUP BY e.b
        ),
        moved AS (
            UPDATE sp_cc c SET label = p.label
            FROM pushed p
            WHERE c.node = p.node AND p.label < c.label
            RETURNING c.node, c.label
        )
        INSERT INTO sp_cc_next SELECT node, label FROM moved;
        TRUNCATE sp_cc_front;
        INSERT INTO sp_cc_front SELECT node, label FROM sp_cc_next;
    END LOOP;
    RETURN v_rounds;
END;
$$;

-- Golden records, from sp_grecs(agent_id, source, full_name, name_norm, name_key, team_id,
-- single) and sp_gkeys(agent_id, kind, value), into sp_golden(agent_id, full_name, emails,
-- phones, team_id, sources): the most frequent (then most complete) name variant, written the
-- cleanest way it was seen; the union of normalized e-mails and phones; the team most
-- supported by the sources (the feed breaks ties); the number of sources. An agent with one
-- source takes it as it is; "single" marks the agents the caller knows to have one record,
-- which then skip the ranking (a first run: 600k of 1.3M agents).
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_golden()
RETURNS bigint
LANGUAGE plpgsql
-- (no hash aggregates: see the sorts below; undone when the function returns)
SET enable_hashagg = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_golden']);
    ANALYZE sp_grecs;
    ANALYZE sp_gkeys;
    -- One sort of the records by agent and name variant ranks the variants (window counts),
    -- a second picks each agent's display name; single-source agents fall out of the same
    -- pass. Contacts: one sort de-duplicates them and orders each agent's values, so the
    -- arrays need no sort of their own. (Sorting beats hashing here: the hash tables of
    -- millions of groups outgrow memory and the CPU caches.)
    CREATE UNLOGGED TABLE syncpipe_work.sp_golden AS
    WITH ranked AS (
        SELECT agent_id, source, full_name, name_key, team_id,
               count(*) OVER (PARTITION BY agent_id) AS sources,
               count(*) OVER (PARTITION BY agent_id, name_key) AS variant_n,
               max(length(name_norm)) OVER (PARTITION BY agent_id, name_key) AS variant_len
        FROM sp_grecs
        WHERE NOT single
    ),
    best AS (
        SELECT DISTINCT ON (agent_id) agent_id, sources,
               CASE WHEN sources = 1 OR name_key IS NOT NULL THEN full_name END AS full_name
        FROM ranked
        ORDER BY agent_id, name_key IS NULL, variant_n DESC, variant_len DESC, name_key,
                 (full_name = upper(full_name) OR full_name = lower(full_name)),
                 (position(',' IN full_name) > 0),
                 (source = 'new_agents') DESC,
                 length(full_name) DESC, full_name
    ),
    team AS (
        SELECT DISTINCT ON (agent_id) agent_id, team_id
        FROM (SELECT agent_id, team_id, count(*) AS n, bool_or(source = 'new_agents') AS feed
              FROM sp_grecs WHERE team_id IS NOT NULL AND NOT single
              GROUP BY agent_id, team_id) t
        ORDER BY agent_id, n DESC, feed DESC, team_id
    ),
    heads AS (
        SELECT b.agent_id, b.full_name, t.team_id, b.sources
        FROM best b LEFT JOIN team t ON t.agent_id = b.agent_id
        UNION ALL
        SELECT agent_id, full_name, team_id, 1 FROM sp_grecs WHERE single
    ),
    contacts AS (
        SELECT agent_id,
               array_agg(value) FILTER (WHERE kind = 'e') AS emails,
               array_agg(value) FILTER (WHERE kind = 'p') AS phones
        FROM (SELECT DISTINCT agent_id, kind, value COLLATE "C" AS value FROM sp_gkeys
              ORDER BY 1, 2, 3) d
        GROUP BY agent_id
    )
    SELECT h.agent_id,
           regexp_replace(btrim(CASE
               WHEN position(',' IN h.full_name) > 0
                    AND h.full_name !~* ',\s*(jr|sr|ii|iii|iv)\.?\s*$'
               THEN split_part(h.full_name, ',', 2) || ' ' || split_part(h.full_name, ',', 1)
               ELSE h.full_name END), '\s+', ' ', 'g') AS full_name,
           coalesce(k.emails, '{}') AS emails, coalesce(k.phones, '{}') AS phones,
           h.team_id, h.sources::integer AS sources
    FROM heads h
    LEFT JOIN contacts k ON k.agent_id = h.agent_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Bring the contact keys (public.merge_agent_contacts) of the listed agents in step with
-- their emails and phone_numbers: an active agent's keys are its contacts, a retired one has
-- none. Called after the merge changed those agents.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_contacts_sync(p_agents bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    DELETE FROM public.merge_agent_contacts WHERE agent_id = ANY (p_agents);
    INSERT INTO public.merge_agent_contacts (kind, value, agent_id)
    SELECT 'e', unnest(emails), agent_id
    FROM public.new_unified_agents
    WHERE agent_id = ANY (p_agents) AND merged_into IS NULL
    UNION
    SELECT 'p', unnest(phone_numbers), agent_id
    FROM public.new_unified_agents
    WHERE agent_id = ANY (p_agents) AND merged_into IS NULL;
END;
$$;

-- Recompute the stored golden records of the agents in sp_refresh(agent_id) from their
-- lineage (names, teams) and their sources (contacts, normalized again), and whether a
-- review is open for them.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_refresh_agents()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_grecs', 'sp_gkeys', 'sp_contacts_in']);
    ANALYZE sp_refresh;
    CREATE UNLOGGED TABLE syncpipe_work.sp_grecs AS
        SELECT s.agent_id, s.source, s.source_id, s.full_name, s.name_norm, s.name_key,
               s.team_id, false AS single
        FROM public.unified_agent_sources s JOIN sp_refresh f ON f.agent_id = s.agent_id;
    CREATE UNLOGGED TABLE syncpipe_work.sp_contacts_in AS
        SELECT r.agent_id AS uid, f.kind, x.v AS raw
        FROM sp_grecs r
        -- (the key's own type, so its index serves; the CASE keeps members' ids from the cast)
        JOIN public.new_agents a
          ON a.supabase_uuid = CASE WHEN r.source = 'new_agents' THEN r.source_id::uuid END
        CROSS JOIN LATERAL (VALUES ('e'::"char", a.email_clean), ('p'::"char", a.phone_digits))
            AS f(kind, value)
        CROSS JOIN LATERAL jsonb_array_elements_text(
            CASE WHEN jsonb_typeof(f.value) = 'array' THEN f.value ELSE '[]' END) AS x(v);
    PERFORM syncpipe_internal.normalize_contacts();
    CREATE UNLOGGED TABLE syncpipe_work.sp_gkeys AS
        SELECT uid AS agent_id, kind, value FROM sp_contacts
        UNION ALL
        SELECT r.agent_id, f.kind, x.value
        FROM sp_grecs r
        JOIN public.unified_company_member m
          ON m.id = CASE WHEN r.source = 'company_member' THEN r.source_id::bigint END
        CROSS JOIN LATERAL (VALUES ('e'::"char", m.email_normalized),
                                   ('p'::"char", m.phone_normalized)) AS f(kind, vals)
        CROSS JOIN LATERAL unnest(f.vals) AS x(value);
    PERFORM syncpipe_internal.merge_golden();

    UPDATE public.new_unified_agents a
    SET full_name = coalesce(g.full_name, a.full_name),
        emails = coalesce(g.emails, '{}'), phone_numbers = coalesce(g.phones, '{}'),
        source_team_id = g.team_id, source_count = coalesce(g.sources, 0),
        needs_review = r.agent_id IS NOT NULL
    FROM sp_refresh f
    LEFT JOIN sp_golden g ON g.agent_id = f.agent_id
    -- (one pass over the open items: a probe per agent, with an OR, scans the open-pair
    -- index whole each time)
    LEFT JOIN (SELECT q.agent_id FROM public.merge_review_queue q WHERE q.status = 'open'
               UNION
               SELECT q.candidate_agent_id FROM public.merge_review_queue q
               WHERE q.status = 'open') r ON r.agent_id = f.agent_id
    WHERE a.agent_id = f.agent_id AND a.merged_into IS NULL
      AND (a.full_name, a.emails, a.phone_numbers, a.source_team_id, a.source_count,
           a.needs_review)
          IS DISTINCT FROM (coalesce(g.full_name, a.full_name), coalesce(g.emails, '{}'),
                            coalesce(g.phones, '{}'), g.team_id, coalesce(g.sources, 0),
                            r.agent_id IS NOT NULL);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM syncpipe_internal.merge_contacts_sync(ARRAY(SELECT agent_id FROM sp_refresh));
    RETURN v_count;
END;
$$;

-- Retire the agents listed in sp_retire(agent_id, survivor): they point to their survivor
-- (merged_into, kept one hop), their lineage moves, and their open review items follow
-- (an item that now joins an agent to itself is answered by the merge and removed).
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_retire_agents()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE public.new_unified_agents a
    SET merged_into = r.survivor, needs_review = false
    FROM sp_retire r WHERE a.agent_id = r.agent_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 THEN
        RETURN 0;
    END IF;
    UPDATE public.new_unified_agents a SET merged_into = r.survivor
    FROM sp_retire r WHERE a.merged_into = r.agent_id;
    UPDATE public.unified_agent_sources s SET agent_id = r.survivor
    FROM sp_retire r WHERE s.agent_id = r.agent_id;
    DELETE FROM public.merge_dirty_agents d USING sp_retire r WHERE d.agent_id = r.agent_id;
    PERFORM syncpipe_internal.merge_contacts_sync(ARRAY(SELECT agent_id FROM sp_retire));

    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_remap']);
    CREATE UNLOGGED TABLE syncpipe_work.sp_remap AS
        SELECT q.id, coalesce(ra.survivor, q.agent_id) AS a,
               coalesce(rb.survivor, q.candidate_agent_id) AS b, q.confidence
        FROM public.merge_review_queue q
        LEFT JOIN sp_retire ra ON ra.agent_id = q.agent_id
        LEFT JOIN sp_retire rb ON rb.agent_id = q.candidate_agent_id
        WHERE q.status = 'open' AND (ra.agent_id IS NOT NULL OR rb.agent_id IS NOT NULL);
    DELETE FROM public.merge_review_queue q USING sp_remap m WHERE q.id = m.id AND m.a = m.b;
    DELETE FROM sp_remap WHERE a = b;
    -- Two items for one pair: keep one (an untouched one, else the strongest).
    DELETE FROM public.merge_review_queue q USING sp_remap m
    WHERE q.id = m.id AND (
        EXISTS (SELECT 1 FROM public.merge_review_queue o
                WHERE o.status = 'open' AND o.id <> m.id
                  AND o.id NOT IN (SELECT id FROM sp_remap)
                  AND least(o.agent_id, o.candidate_agent_id) = least(m.a, m.b)
                  AND greatest(o.agent_id, o.candidate_agent_id) = greatest(m.a, m.b))
        OR EXISTS (SELECT 1 FROM sp_remap o
                   WHERE o.id <> m.id AND least(o.a, o.b) = least(m.a, m.b)
                     AND greatest(o.a, o.b) = greatest(m.a, m.b)
                     AND (o.confidence, -o.id) > (m.confidence, -m.id)));
    UPDATE public.merge_review_queue q SET agent_id = m.a, candidate_agent_id = m.b
    FROM sp_remap m
    WHERE q.id = m.id AND q.status = 'open';
    RETURN v_count;
END;
$$;

-- Phase 1: work out what a run would do, into work tables (nothing permanent written).
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_plan(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_auto    integer := coalesce((p_options ->> 'auto_threshold')::integer, 70);
    v_email   integer := coalesce((p_options ->> 'confidence_email')::integer, 100);
    v_phone   integer := coalesce((p_options ->> 'confidence_phone')::integer, 90);
    v_name    integer := coalesce((p_options ->> 'confidence_name_team')::integer, 80);
    v_fuzzy   integer := coalesce((p_options ->> 'confidence_fuzzy_name')::integer, 60);
    v_sim     real := coalesce((p_options ->> 'fuzzy_similarity')::real, 0.6);
    v_dry     boolean := coalesce((p_options ->> 'dry_run')::boolean, false);
    v_limit   bigint := (p_options ->> 'limit')::bigint;
    v_offset  bigint;
    v_known   boolean;
    v_level   integer;
    v_rounds  integer := 0;
    v_components     bigint;
    v_components_new bigint;
    v_total   bigint;
    v_review_min real := coalesce((p_options ->> 'review_min_weight')::real, 12);
    v_per_record integer := coalesce((p_options ->> 'review_per_record')::integer, 3);
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_pend', 'sp_pkeys', 'sp_keyrecs', 'sp_names',
        'sp_keyknown', 'sp_keynames', 'sp_keygroups', 'sp_shared', 'sp_keycompat',
        'sp_keyallow', 'sp_keyholders', 'sp_freq', 'sp_namepairs', 'sp_nodephones', 'sp_namelinks',
        'sp_cands', 'sp_candw', 'sp_candkeys', 'sp_links', 'sp_gedges',
        'sp_cc_edges', 'sp_comp', 'sp_compconf', 'sp_review', 'sp_meta', 'sp_names_in',
        'sp_contacts_in', 'sp_canon', 'sp_cnames']);
    SELECT coalesce(max(agent_id), 0) + 1 INTO v_offset FROM public.new_unified_agents;
    v_known := EXISTS (SELECT 1 FROM public.unified_agent_sources);
    CREATE UNLOGGED TABLE syncpipe_work.sp_meta AS SELECT v_offset AS node_offset;
    -- Canonical given names of each known variant (Bob -> robert), for name comparisons.
    CREATE UNLOGGED TABLE syncpipe_work.sp_canon AS
        SELECT variant, array_agg(canonical ORDER BY canonical) AS canons
        FROM public.name_variants GROUP BY variant;
    ALTER TABLE sp_canon ADD PRIMARY KEY (variant);

    PERFORM syncpipe_internal.merge_phase('pending');
    -- Pending records: feed rows newer than their lineage (or never matched), and members
    -- not processed or without lineage (the member pipeline writes them "processed" when
    -- this merge follows it in the same transaction).
    -- A batched run (limit) takes them in the order of their keys, so that two runs on the
    -- same data cut the same batches; without a limit no sort is made (the planner drops a
    -- constant sort key).
    CREATE UNLOGGED TABLE syncpipe_work.sp_pend AS
    SELECT row_number() OVER (ORDER BY CASE WHEN v_limit IS NOT NULL THEN x.source END DESC,
                                       CASE WHEN v_limit IS NOT NULL THEN x.source_id END) AS pid,
           x.*
    FROM (
        SELECT 'new_agents'::text AS source, a.supabase_uuid::text AS source_id,
               nullif(btrim(a.team_id), '') AS team_id, a.full_name, a.updated_at AS version,
               a.email_clean AS email_json, a.phone_digits AS phone_json,
               NULL::text[] AS emails, NULL::text[] AS phones, l.agent_id AS old_agent,
               NULL::text AS name_norm, NULL::text AS name_key, NULL::text AS first_name,
               NULL::text AS last_name, NULL::text AS middle, NULL::text AS suffix
        FROM public.new_agents a
        LEFT JOIN public.unified_agent_sources l
               ON l.source = 'new_agents' AND l.source_id = a.supabase_uuid::text
        WHERE l.source_id IS NULL OR l.source_version < a.updated_at
        UNION ALL
        SELECT 'company_member', m.id::text, m.team_id, m.member_name, m.updated_at,
               NULL, NULL, m.email_normalized, m.phone_normalized, l.agent_id,
               m.name_normalized, m.name_key, m.name_first, m.name_last, m.name_middle,
               m.name_suffix
        FROM public.unified_company_member m
        LEFT JOIN public.unified_agent_sources l
               ON l.source = 'company_member' AND l.source_id = m.id::text
        WHERE NOT m.processed OR l.source_id IS NULL
    ) x
    ORDER BY CASE WHEN v_limit IS NOT NULL THEN x.source END DESC,
             CASE WHEN v_limit IS NOT NULL THEN x.source_id END
    LIMIT v_limit;  -- merge_batch_records: the rest waits for the next batch
    IF v_dry AND to_regclass('syncpipe_work.sp_members') IS NOT NULL THEN
        -- A dry run's member pipeline computed members it did not insert: match them too.
        EXECUTE $q$
        INSERT INTO sp_pend (pid, source, source_id, team_id, full_name, version, email_json,
                             phone_json, emails, phones, old_agent, name_norm, name_key,
                             first_name, last_name, middle, suffix)
        SELECT (SELECT coalesce(max(pid), 0) FROM sp_pend) + row_number() OVER (),
               'company_member', 'pending:' || s.record_hash, s.team_id, s.name_raw, now(),
               NULL, NULL, s.emails, s.phones, NULL, s.name_norm, s.name_key, s.first_name,
               s.last_name, s.middle, s.suffix
        FROM (SELECT DISTINCT ON (record_hash) * FROM sp_members ORDER BY record_hash, pos) s
        WHERE NOT EXISTS (SELECT 1 FROM public.unified_company_member m
                          WHERE m.record_hash = s.record_hash)
        $q$;
    END IF;
    ALTER TABLE sp_pend ADD PRIMARY KEY (pid);
    ANALYZE sp_pend;

    PERFORM syncpipe_internal.merge_phase('normalize');
    -- Feed contacts are normalized here; members' were normalized by the member pipeline.
    -- (unnested in the select list: a per-row lateral function scan costs twice as much)
    CREATE UNLOGGED TABLE syncpipe_work.sp_contacts_in AS
        SELECT pid AS uid, 'e'::"char" AS kind, jsonb_array_elements_text(email_json) AS raw
        FROM sp_pend WHERE jsonb_typeof(email_json) = 'array'
        UNION ALL
        SELECT pid, 'p'::"char", jsonb_array_elements_text(phone_json)
        FROM sp_pend WHERE jsonb_typeof(phone_json) = 'array';
    PERFORM syncpipe_internal.normalize_contacts();
    -- The pending keys: the feed's just normalized (the table taken over, not copied) and the
    -- members'.
    ALTER TABLE sp_contacts RENAME TO sp_pkeys;
    ALTER TABLE sp_pkeys RENAME COLUMN uid TO pid;
    INSERT INTO sp_pkeys (pid, kind, value)
        SELECT pid, 'e'::"char", unnest(emails) FROM sp_pend WHERE emails <> '{}'
        UNION ALL
        SELECT pid, 'p'::"char", unnest(phones) FROM sp_pend WHERE phones <> '{}';
    ANALYZE sp_pkeys;
    -- Feed names are normalized here; members' by the member pipeline.
    CREATE UNLOGGED TABLE syncpipe_work.sp_names_in AS
        SELECT pid AS uid, full_name AS raw FROM sp_pend WHERE source = 'new_agents';
    PERFORM syncpipe_internal.normalize_person_names();
    INSERT INTO sp_person_names
        SELECT pid, name_norm, name_key, first_name, last_name, middle, suffix
        FROM sp_pend WHERE source = 'company_member';
    ANALYZE sp_person_names;

    PERFORM syncpipe_internal.merge_phase('candidates');
    -- Who holds each pending key: pending records, and known agents (the master table's
    -- contact keys). Only keys held by more than one node can link anything; they are
    -- counted by a 64-bit hash of the value (an integer groups several times faster than
    -- text; a collision only keeps a key that then links nothing).
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyknown (kind "char", value text COLLATE "C",
                                                     node bigint);
    IF v_known THEN
        -- (a probe of the key index per value: the planner, misjudging the join, would
        -- rather read the whole key table)
        INSERT INTO sp_keyknown
        SELECT d.kind, d.value, k.agent_id
        FROM (SELECT DISTINCT kind, value FROM sp_pkeys) d
        CROSS JOIN LATERAL (SELECT c.agent_id FROM public.merge_agent_contacts c
                            WHERE c.kind = d.kind AND c.value = d.value OFFSET 0) k
        JOIN public.new_unified_agents a ON a.agent_id = k.agent_id AND a.merged_into IS NULL;
    END IF;
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyrecs AS
        SELECT k.kind, k.value, k.node
        FROM (SELECT kind, value, v_offset + pid AS node FROM sp_pkeys
              UNION ALL
              SELECT kind, value, node FROM sp_keyknown) k
        WHERE (k.kind, hashtextextended(k.value, 0)) IN (
            SELECT kind, h
            FROM (SELECT kind, hashtextextended(value, 0) AS h FROM sp_pkeys
                  UNION ALL
                  SELECT kind, hashtextextended(value, 0) FROM sp_keyknown) a
            GROUP BY kind, h HAVING count(*) > 1);
    ANALYZE sp_keyrecs;

    -- Names: pending records, and the lineage of known agents in the same teams or holding
    -- the same keys (a changed record's old lineage row excluded).
    CREATE UNLOGGED TABLE syncpipe_work.sp_names AS
        SELECT v_offset + p.pid AS node, p.team_id, n.name_norm, n.name_key, n.first_name,
               n.last_name, n.middle, n.suffix, true AS pending
        FROM sp_pend p JOIN sp_person_names n ON n.uid = p.pid;
    IF v_known THEN
        INSERT INTO sp_names
        SELECT s.agent_id, s.team_id, s.name_norm, s.name_key, s.first_name, s.last_name,
               s.middle, s.suffix, false
        FROM (
            -- Each condition by its own index (an OR of the two reads the whole lineage), the
            -- agents probed one by one; the second branch leaves out what the first found.
            SELECT * FROM public.unified_agent_sources
            WHERE team_id IN (SELECT team_id COLLATE "C" FROM sp_pend)
            UNION ALL
            SELECT l.*
            FROM (SELECT DISTINCT node FROM sp_keyrecs WHERE node < v_offset) k
            CROSS JOIN LATERAL (SELECT * FROM public.unified_agent_sources
                                WHERE agent_id = k.node OFFSET 0) l
            WHERE (l.team_id IS NULL
                   OR l.team_id NOT IN (SELECT team_id COLLATE "C" FROM sp_pend
                                        WHERE team_id IS NOT NULL))
        ) s
        WHERE NOT EXISTS (SELECT 1 FROM sp_pend p
                          WHERE p.source = s.source AND p.source_id = s.source_id);
    END IF;
    CREATE INDEX ON sp_names (node);
    ANALYZE sp_names;

    PERFORM syncpipe_internal.merge_phase('shared_contacts');
    -- How common each given and family name is: what earlier merges saw, and this run's
    -- records (the weights of name evidence below).
    CREATE UNLOGGED TABLE syncpipe_work.sp_freq AS
        SELECT part, value, sum(n)::bigint AS n
        FROM (SELECT part, value, records AS n
              FROM syncpipe_internal.merge_name_frequencies
              UNION ALL
              SELECT 'f'::"char", first_name COLLATE "C", count(*)
              FROM sp_names WHERE pending AND first_name IS NOT NULL GROUP BY 2
              UNION ALL
              SELECT 'l'::"char", last_name COLLATE "C", count(*)
              FROM sp_names WHERE pending AND last_name IS NOT NULL GROUP BY 2) x
        GROUP BY part, value;
    ALTER TABLE sp_freq ADD PRIMARY KEY (part, value);
    ANALYZE sp_freq;
    SELECT greatest(coalesce(sum(n), 0), 2) INTO v_total FROM sp_freq WHERE part = 'l';

    -- Contact evidence is judged per pair of holders, not per key. A key held by one name
    -- (or by names that all fit one person) is evidence between all its holders. A key held
    -- by names of different people (an office line, info@) is evidence only between holders
    -- whose names fit each other (Robert / Bob, a typo, "Miller, Robert", the same name
    -- twice), and none where a name fits two names that do not fit each other ("J. Smith"
    -- with "John Smith" and "Jane Smith": no chain through the ambiguous one). A key with
    -- very many holders or names is no evidence at all.
    -- sp_keynames: one row per name variant (vid) on a key held by several nodes.
    -- (weak: a one-word name that many records carry, "Lily": it fits nobody else on a key)
    CREATE UNLOGGED TABLE syncpipe_work.sp_keynames AS
        SELECT row_number() OVER () AS vid, g.*, coalesce(c.canons, ARRAY[g.first_name]) AS canons,
               (g.last_name IS NULL AND coalesce(f.n, 0) > greatest(20, v_total / 1000.0))
                   AS weak
        FROM (SELECT k.kind, k.value, n.name_key, n.first_name, n.last_name, n.suffix,
                     count(*) AS holders
              FROM sp_keyrecs k
              JOIN sp_names n ON n.node = k.node
              WHERE n.name_key IS NOT NULL
              GROUP BY 1, 2, 3, 4, 5, 6) g
        LEFT JOIN sp_canon c ON c.variant = g.first_name
        LEFT JOIN (SELECT value, sum(n) AS n FROM sp_freq GROUP BY value) f
               ON f.value = g.first_name AND g.last_name IS NULL;
    ANALYZE sp_keynames;
    -- The keys that can be shared at all: several names, or very many holders.
    CREATE UNLOGGED TABLE syncpipe_work.sp_keygroups AS
        SELECT kind, value, count(*)::integer AS names, sum(holders)::integer AS records
        FROM sp_keynames GROUP BY kind, value
        HAVING count(*) > 1 OR sum(holders) > 20;
    ANALYZE sp_keygroups;
    -- Every two variants of a key with a few names: do they fit one person?
    CREATE UNLOGGED TABLE syncpipe_work.sp_keycompat AS
        SELECT a.kind, a.value, a.vid AS va, b.vid AS vb,
               syncpipe_internal.names_compatible(a.name_key, a.first_name, a.last_name,
                                                  a.suffix, a.canons, b.name_key, b.first_name,
                                                  b.last_name, b.suffix, b.canons)
               -- (on a key with more than two records: an office line's, not one person's)
               AND NOT ((a.weak OR b.weak) AND g.records > 2) AS fits,
               syncpipe_internal.names_conflict(a.first_name, a.last_name, a.suffix, a.canons,
                                                b.first_name, b.last_name, b.suffix, b.canons)
                   AS conflict
        FROM sp_keygroups g
        JOIN sp_keynames a ON a.kind = g.kind AND a.value = g.value
        JOIN sp_keynames b ON b.kind = a.kind AND b.value = a.value AND b.vid <> a.vid
        WHERE g.names BETWEEN 2 AND 8 AND g.records <= 20;
    -- Pairs of variants that are evidence: they fit, and neither fits two variants that do
    -- not fit each other.
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyallow AS
    WITH mixed AS (
        SELECT kind, value FROM sp_keycompat GROUP BY kind, value HAVING NOT bool_and(fits)
    ),
    mc AS (
        SELECT c.* FROM sp_keycompat c JOIN mixed m ON m.kind = c.kind AND m.value = c.value
    ),
    ambiguous AS (
        SELECT DISTINCT x.kind, x.value, x.va AS vid
        FROM mc x
        JOIN mc y ON y.kind = x.kind AND y.value = x.value AND y.va = x.va
                 AND y.vb > x.vb AND y.fits
        JOIN mc z ON z.kind = x.kind AND z.value = x.value AND z.va = x.vb
                 AND z.vb = y.vb AND NOT z.fits
        WHERE x.fits
    ),
    -- (a key one full name fits with every other one, as Robert Miller fits Bob Miller and
    -- Robret Miller, is one person's: every pair is allowed)
    personal AS (
        SELECT c.kind, c.value
        FROM mc c JOIN sp_keynames v ON v.vid = c.va
        WHERE length(v.first_name) > 1 AND v.last_name IS NOT NULL
        GROUP BY c.kind, c.value, c.va HAVING bool_and(c.fits)
        UNION
        -- (and a key whose names are variants of one person's, no two of them saying "two
        -- people": "Joanne Gracia" and "Joanne Gaarcia" on joanne.garcia48@..., "Scott
        -- Rivrea" and "Scott Riivera")
        SELECT kind, value FROM mc GROUP BY kind, value HAVING NOT bool_or(conflict)
    )
    SELECT c.kind, c.value, c.va, c.vb
    FROM sp_keycompat c
    WHERE NOT EXISTS (SELECT 1 FROM mixed m WHERE m.kind = c.kind AND m.value = c.value)
    UNION ALL
    SELECT c.kind, c.value, c.va, c.vb
    FROM mc c
    WHERE (c.kind, c.value) IN (SELECT kind, value FROM personal)
       OR (c.fits
           AND NOT EXISTS (SELECT 1 FROM ambiguous m
                           WHERE m.kind = c.kind AND m.value = c.value
                             AND m.vid IN (c.va, c.vb)));
    -- Shared keys (not evidence between every two holders): very many holders, many names,
    -- or two names that are not allowed together.
    CREATE UNLOGGED TABLE syncpipe_work.sp_shared AS
    SELECT g.kind, g.value, g.records, g.names
    FROM sp_keygroups g
    LEFT JOIN (SELECT kind, value, count(*) AS n FROM sp_keyallow GROUP BY kind, value) a
           ON a.kind = g.kind AND a.value = g.value
    WHERE g.records > 20 OR g.names > 8 OR coalesce(a.n, 0) < g.names * (g.names - 1);
    ALTER TABLE sp_shared ADD PRIMARY KEY (kind, value);
    ANALYZE sp_shared;
    -- The holders of the shared keys that are still evidence between some of them, with
    -- their variants (a known agent may hold several).
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyholders AS
        SELECT DISTINCT k.kind, k.value, k.node, v.vid
        FROM sp_shared s
        JOIN sp_keyrecs k ON k.kind = s.kind AND k.value = s.value
        JOIN sp_names n ON n.node = k.node
        JOIN sp_keynames v ON v.kind = k.kind AND v.value = k.value
             AND v.name_key = n.name_key AND v.first_name IS NOT DISTINCT FROM n.first_name
             AND v.last_name IS NOT DISTINCT FROM n.last_name
             AND v.suffix IS NOT DISTINCT FROM n.suffix
        WHERE s.records <= 20 AND s.names <= 8;
    ANALYZE sp_keyholders;

    PERFORM syncpipe_internal.merge_phase('links');

    -- Name links within a team: the same name (name_team), or a known nickname with the same
    -- family name ("Tom Rivera" / "Thomas Rivera": nickname_team, as strong as name_team).
    -- Different middle initials or suffixes are different people.
    CREATE UNLOGGED TABLE syncpipe_work.sp_namepairs AS
    SELECT DISTINCT least(p.node, n.node) AS a, greatest(p.node, n.node) AS b,
           CASE WHEN n.name_key = p.name_key THEN 'name_team' ELSE 'nickname_team' END AS rule,
           CASE WHEN n.name_key = p.name_key THEN p.name_norm
                ELSE least(p.first_name, n.first_name) || ' ~ '
                     || greatest(p.first_name, n.first_name) || ' ' || p.last_name
           END COLLATE "C" AS detail,
           p.first_name, p.last_name, p.team_id
    FROM sp_names p
    JOIN sp_names n ON n.team_id = p.team_id AND n.name_key = p.name_key
                   AND n.suffix IS NOT DISTINCT FROM p.suffix
                   AND (n.middle = p.middle OR n.middle IS NULL OR p.middle IS NULL)
    WHERE p.pending AND n.node <> p.node AND (NOT n.pending OR n.node < p.node)
    UNION ALL
    SELECT DISTINCT least(p.node, n.node), greatest(p.node, n.node), 'nickname_team',
           (least(p.first_name, n.first_name) || ' ~ ' || greatest(p.first_name, n.first_name)
            || ' ' || p.last_name) COLLATE "C",
           p.first_name, p.last_name, p.team_id
    FROM sp_names p
    JOIN sp_canon cp ON cp.variant = p.first_name
    JOIN sp_names n ON n.team_id = p.team_id AND n.last_name = p.last_name
                   AND n.first_name <> p.first_name
                   AND n.suffix IS NOT DISTINCT FROM p.suffix
                   AND (n.middle = p.middle OR n.middle IS NULL OR p.middle IS NULL)
    JOIN sp_canon cn ON cn.variant = n.first_name AND cn.canons && cp.canons
    WHERE p.pending AND n.node <> p.node AND (NOT n.pending OR n.node < p.node)
      AND n.name_key <> p.name_key
      AND position(' ' IN p.name_key) > 0 AND position(' ' IN n.name_key) > 0;
    -- Personal phones and e-mails of the nodes of those pairs (shared ones left out): two
    -- records of one name in one team whose personal phones, or whose e-mails, all differ are
    -- namesakes until a person says otherwise (and so is a one-word name that many records
    -- carry): their pair goes to review instead.
    CREATE UNLOGGED TABLE syncpipe_work.sp_nodephones AS
        SELECT node, array_agg(value) FILTER (WHERE kind = 'p') AS phones,
               array_agg(value) FILTER (WHERE kind = 'e') AS emails
        FROM (SELECT v_offset + k.pid AS node, k.kind, k.value
              FROM sp_pkeys k
              WHERE v_offset + k.pid IN (SELECT a FROM sp_namepairs UNION SELECT b FROM sp_namepairs)
              UNION ALL
              SELECT c.agent_id, c.kind, c.value
              FROM public.merge_agent_contacts c
              WHERE c.agent_id IN (SELECT a FROM sp_namepairs WHERE a < v_offset
                                   UNION SELECT b FROM sp_namepairs WHERE b < v_offset)) k
        WHERE NOT EXISTS (SELECT 1 FROM sp_shared s WHERE s.kind = k.kind AND s.value = k.value)
          AND NOT EXISTS (SELECT 1 FROM public.merge_shared_contacts s
                          WHERE s.kind = k.kind AND s.value = k.value)
        GROUP BY node;
    ALTER TABLE sp_nodephones ADD PRIMARY KEY (node);
    ANALYZE sp_namepairs;
    ANALYZE sp_nodephones;
    -- The weight of a name link: the given and the family name, each worth more the rarer
    -- it is (log2 of m / u, u the share of records holding it), and the team.
    CREATE UNLOGGED TABLE syncpipe_work.sp_namelinks AS
    WITH pairs AS (
        SELECT n.*,
           (pa.phones IS NOT NULL AND pb.phones IS NOT NULL AND NOT pa.phones && pb.phones)
           OR (pa.emails IS NOT NULL AND pb.emails IS NOT NULL
               AND NOT pa.emails && pb.emails) AS contacts_differ
        FROM sp_namepairs n
        LEFT JOIN sp_nodephones pa ON pa.node = n.a
        LEFT JOIN sp_nodephones pb ON pb.node = n.b
    ),
    -- one name in one team held by two people (two records whose contacts differ): no record
    -- of that name joins another by the name alone (a record without contacts would chain
    -- them)
    split AS (
        SELECT DISTINCT team_id, detail FROM pairs WHERE rule = 'name_team' AND contacts_differ
    )
    SELECT n.a, n.b, n.rule, n.detail,
           n.contacts_differ
           OR (n.rule = 'name_team' AND sp.team_id IS NOT NULL)
           -- a one-word name that many records carry ("Smith") is no evidence on its own
           OR (n.last_name IS NULL
               AND coalesce(ff.n, 0) + coalesce(fw.n, 0) > v_total / 1000.0) AS conflict,
           round((CASE WHEN n.rule = 'name_team'
                       THEN least(8, (ln((0.9 * v_total / greatest(coalesce(ff.n, 1), 1))::float8) / ln(2.0::float8)))
                       ELSE 3 END
                  + least(10, (ln((0.9 * v_total / greatest(coalesce(fl.n, 1), 1))::float8) / ln(2.0::float8)))
                  + 10)::numeric, 1)::real AS weight
    FROM pairs n
    LEFT JOIN split sp ON sp.team_id = n.team_id AND sp.detail = n.detail
    LEFT JOIN sp_freq ff ON ff.part = 'f' AND ff.value = n.first_name
    LEFT JOIN sp_freq fl ON fl.part = 'l' AND fl.value = n.last_name
    LEFT JOIN sp_freq fw ON fw.part = 'l' AND fw.value = n.first_name AND n.last_name IS NULL;

    -- Links between nodes (a < b): contacts, and names within a team without a conflict.
    -- (One CREATE TABLE AS, not a second INSERT: no part of an INSERT runs in parallel.)
    -- weight: a personal e-mail +9, a personal phone +8 (less on a key held by several
    -- names); a name link as worked out above.
    CREATE UNLOGGED TABLE syncpipe_work.sp_links AS
    SELECT *
    FROM (
        SELECT DISTINCT ON (x.node, x.ynode) x.node AS a, x.ynode AS b,
               CASE x.kind WHEN 'e' THEN 'email' ELSE 'phone' END AS rule,
               CASE x.kind WHEN 'e' THEN v_email ELSE v_phone END AS conf,
               x.value AS detail,
               (CASE x.kind WHEN 'e' THEN 9 ELSE 8 END - 2 * x.per_pair)::real AS weight
        FROM (SELECT x.kind, x.value, x.node, y.node AS ynode, 0 AS per_pair
              FROM sp_keyrecs x
              JOIN sp_keyrecs y ON y.kind = x.kind AND y.value = x.value AND y.node > x.node
              WHERE NOT EXISTS (SELECT 1 FROM sp_shared s
                                WHERE s.kind = x.kind AND s.value = x.value)
              UNION ALL
              -- keys held by different people: the holders whose names fit
              SELECT x.kind, x.value, x.node, y.node, 1
              FROM sp_keyholders x
              JOIN sp_keyholders y ON y.kind = x.kind AND y.value = x.value AND y.node > x.node
              WHERE x.vid = y.vid
                 OR EXISTS (SELECT 1 FROM sp_keyallow w
                            WHERE w.kind = x.kind AND w.value = x.value
                              AND w.va = x.vid AND w.vb = y.vid)) x
        ORDER BY x.node, x.ynode, 4 DESC, x.value  -- (the same detail in every run)
    ) c
    UNION ALL
    SELECT a, b, rule, v_name, detail, weight FROM sp_namelinks WHERE NOT conflict;
    ANALYZE sp_links;

    PERFORM syncpipe_internal.merge_phase('clusters');
    -- One (strongest) automatic link per pair of nodes, both directions.
    CREATE UNLOGGED TABLE syncpipe_work.sp_gedges AS
        SELECT a, b, max(conf) AS conf FROM sp_links WHERE conf > v_auto GROUP BY a, b;
    ANALYZE sp_gedges;
    CREATE UNLOGGED TABLE syncpipe_work.sp_cc_edges AS
        SELECT a, b FROM sp_gedges UNION ALL SELECT b, a FROM sp_gedges;
    v_rounds := syncpipe_internal.merge_label_components();
    -- Every pending record is in a component, maybe alone.
    CREATE UNLOGGED TABLE syncpipe_work.sp_comp AS
        SELECT v_offset + p.pid AS node, coalesce(c.label, v_offset + p.pid) AS label
        FROM sp_pend p LEFT JOIN sp_cc c ON c.node = v_offset + p.pid
        UNION ALL
        SELECT node, label FROM sp_cc WHERE node < v_offset;
    ALTER TABLE sp_comp ADD PRIMARY KEY (node);
    ANALYZE sp_comp;

    -- Confidence of each component: the lowest link that holds it together. A component
    -- whose links share one confidence takes it; the others are cut level by level.
    CREATE UNLOGGED TABLE syncpipe_work.sp_compconf AS
        SELECT c.label, min(e.conf) AS low, max(e.conf) AS high,
               CASE WHEN min(e.conf) = max(e.conf) THEN min(e.conf) END AS conf
        FROM sp_gedges e JOIN sp_comp c ON c.node = e.a
        GROUP BY c.label;
    FOR v_level IN
        SELECT DISTINCT high FROM sp_compconf WHERE conf IS NULL ORDER BY high DESC
    LOOP
        DROP TABLE sp_cc_edges;
        CREATE UNLOGGED TABLE syncpipe_work.sp_cc_edges AS
            SELECT e.a, e.b
            FROM sp_gedges e JOIN sp_comp c ON c.node = e.a
            JOIN sp_compconf f ON f.label = c.label AND f.conf IS NULL
            WHERE e.conf >= v_level;
        INSERT INTO sp_cc_edges SELECT b, a FROM sp_cc_edges;
        v_rounds := v_rounds + syncpipe_internal.merge_label_components();
        UPDATE sp_compconf f SET conf = v_level
        FROM (SELECT c.label
              FROM sp_comp c
              JOIN sp_compconf f2 ON f2.label = c.label AND f2.conf IS NULL
              LEFT JOIN sp_cc l ON l.node = c.node
              GROUP BY c.label
              HAVING count(DISTINCT coalesce(l.label, -c.node)) = 1) ok
        WHERE f.label = ok.label AND f.conf IS NULL;
    END LOOP;
    UPDATE sp_compconf SET conf = low WHERE conf IS NULL;

    PERFORM syncpipe_internal.merge_phase('review');
    -- Doubtful pairs, only between different components, each with a weight (its parts in
    -- words) that ranks the queue:
    --   * any link under the threshold, and name links whose personal phones conflict;
    --   * similar names in one team, blocked by a shared given or family name (a nickname
    --     keeps the family name, a typo in one keeps the other, a missing surname keeps the
    --     given name), each record compared with its neighbours in the block's order only
    --     (a sorted neighbourhood: a team of 20,000 similar names costs what its size does);
    --   * beyond the team: the same rare name, or a rare family name with a fitting given
    --     name, in different teams or without one (agents who moved, feed rows without team).
    -- A pair goes to review when its weight reaches review_min_weight; each record keeps its
    -- review_per_record strongest candidates.
    -- One row per name of a component in a team (a component's records mostly repeat one
    -- name), then pairs of such names across components, at least one side new.
    -- (buckets: in a team of more than 64 records each block is cut into buckets of 8 in its
    -- sort order; a smaller team's blocks are compared whole, bucket 0, without a sort)
    CREATE UNLOGGED TABLE syncpipe_work.sp_cnames AS
    WITH x AS (
        SELECT x.*, coalesce(k.canons, ARRAY[x.first_name]) AS canons,
               kn.n AS key_n, ln_.n AS last_n,
               coalesce(t.big, false) AS big
        FROM (
            SELECT coalesce(c.label, n.node) AS label, n.team_id, n.name_norm, n.name_key,
                   n.first_name, n.last_name, n.suffix, min(n.middle) AS middle,
                   min(n.node) AS node, bool_or(n.pending) AS pending,
                   -- how the family name sounds (a typo mostly keeps it)
                   extensions.dmetaphone(n.last_name) AS lcode
            FROM sp_names n
            LEFT JOIN sp_comp c ON c.node = n.node
            WHERE n.name_key IS NOT NULL
            GROUP BY 1, 2, 3, 4, 5, 6, 7
        ) x
        LEFT JOIN sp_canon k ON k.variant = x.first_name
        -- (how many records carry the name, and the family name: hashed, not sorted)
        LEFT JOIN (SELECT name_key, count(*) AS n FROM sp_names
                   WHERE name_key IS NOT NULL GROUP BY name_key) kn ON kn.name_key = x.name_key
        LEFT JOIN (SELECT last_name, count(*) AS n FROM sp_names
                   WHERE last_name IS NOT NULL GROUP BY last_name) ln_
               ON ln_.last_name = x.last_name
        LEFT JOIN (SELECT team_id, count(*) > 64 AS big FROM sp_names
                   WHERE team_id IS NOT NULL GROUP BY team_id) t ON t.team_id = x.team_id
    )
    SELECT x.*, 0::bigint AS fbucket, 0::bigint AS lbucket, 0::bigint AS cbucket
    FROM x WHERE NOT x.big OR x.team_id IS NULL
    UNION ALL
    SELECT x.*,
           (row_number() OVER (PARTITION BY x.team_id, x.first_name
                               ORDER BY x.last_name, x.node) - 1) / 8,
           (row_number() OVER (PARTITION BY x.team_id, x.last_name
                               ORDER BY x.first_name, x.node) - 1) / 8,
           (row_number() OVER (PARTITION BY x.team_id, x.lcode
                               ORDER BY x.first_name, x.node) - 1) / 8
    FROM x WHERE x.big AND x.team_id IS NOT NULL;
    ANALYZE sp_cnames;
    CREATE UNLOGGED TABLE syncpipe_work.sp_cands AS
    SELECT p.label AS a_label, p.node AS a_node, p.team_id AS a_team, p.name_norm AS a_norm,
           p.name_key AS a_key, p.first_name AS a_first, p.last_name AS a_last,
           p.suffix AS a_suffix, p.middle AS a_middle, p.canons AS a_canons,
           n.label AS b_label, n.node AS b_node, n.team_id AS b_team, n.name_norm AS b_norm,
           n.name_key AS b_key, n.first_name AS b_first, n.last_name AS b_last,
           n.suffix AS b_suffix, n.middle AS b_middle, n.canons AS b_canons
    FROM (
        -- in a team, the same given name: this bucket and the next
        SELECT p.node AS pn, n.node AS nn
        FROM sp_cnames p JOIN sp_cnames n
          ON n.team_id = p.team_id AND n.first_name = p.first_name
         AND n.fbucket IN (p.fbucket, p.fbucket + 1) AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND (n.fbucket > p.fbucket OR n.node > p.node)
        UNION ALL
        -- in a team, the same family name, another given name
        SELECT p.node, n.node
        FROM sp_cnames p JOIN sp_cnames n
          ON n.team_id = p.team_id AND n.last_name = p.last_name
         AND n.lbucket IN (p.lbucket, p.lbucket + 1) AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND (n.lbucket > p.lbucket OR n.node > p.node)
          AND (n.first_name = p.first_name) IS NOT TRUE
        UNION ALL
        -- in a team, family names that sound alike, another family name (a nickname and a
        -- typo: "Chris Johnsno" / "Christopher Johnson")
        SELECT p.node, n.node
        FROM sp_cnames p JOIN sp_cnames n
          ON n.team_id = p.team_id AND n.lcode = p.lcode
         AND n.cbucket IN (p.cbucket, p.cbucket + 1) AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND (n.cbucket > p.cbucket OR n.node > p.node)
          AND n.last_name <> p.last_name AND (n.first_name = p.first_name) IS NOT TRUE
        UNION ALL
        -- beyond the team: the same rare name
        SELECT p.node, n.node
        FROM sp_cnames p JOIN sp_cnames n
          ON n.name_key = p.name_key AND n.node > p.node AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND p.key_n <= 6
          AND (n.team_id = p.team_id) IS NOT TRUE
        UNION ALL
        -- beyond the team: a rare family name and another, fitting, given name
        SELECT p.node, n.node
        FROM sp_cnames p JOIN sp_cnames n
          ON n.last_name = p.last_name AND n.node > p.node AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND p.last_n <= 12
          AND (n.team_id = p.team_id) IS NOT TRUE AND n.name_key <> p.name_key
    ) b
    JOIN sp_cnames p ON p.node = b.pn
    JOIN sp_cnames n ON n.node = b.nn
    WHERE p.suffix IS NOT DISTINCT FROM n.suffix;
    ANALYZE sp_cands;
    -- Personal contacts of the components in those pairs (shared keys left out).
    CREATE UNLOGGED TABLE syncpipe_work.sp_candkeys AS
    WITH labels AS (SELECT a_label AS label FROM sp_cands UNION SELECT b_label FROM sp_cands
                    UNION SELECT coalesce(ca.label, l.a) FROM sp_namelinks l
                          LEFT JOIN sp_comp ca ON ca.node = l.a WHERE l.conflict
                    UNION SELECT coalesce(cb.label, l.b) FROM sp_namelinks l
                          LEFT JOIN sp_comp cb ON cb.node = l.b WHERE l.conflict),
    keys AS (
        -- (every pending record is in sp_comp, alone or not)
        SELECT c.label, k.kind, k.value
        FROM sp_comp c JOIN sp_pkeys k ON k.pid = c.node - v_offset
        WHERE c.node >= v_offset AND c.label IN (SELECT label FROM labels)
        UNION
        -- known agents: those in a component of this run, and those alone (not in sp_comp,
        -- their own label: without this their contacts would be missing and a conflict
        -- unseen whenever records arrive over several runs)
        SELECT e.label, m.kind, m.value
        FROM (SELECT c.label, c.node FROM sp_comp c
              WHERE c.node < v_offset AND c.label IN (SELECT label FROM labels)
              UNION
              SELECT l.label, l.label FROM labels l
              WHERE l.label < v_offset
                AND NOT EXISTS (SELECT 1 FROM sp_comp c WHERE c.node = l.label)) e
        JOIN public.merge_agent_contacts m ON m.agent_id = e.node
    )
    SELECT label, array_agg(value ORDER BY value) FILTER (WHERE kind = 'e') AS emails,
           array_agg(value ORDER BY value) FILTER (WHERE kind = 'p') AS phones
    FROM keys k
    WHERE NOT EXISTS (SELECT 1 FROM sp_shared s WHERE s.kind = k.kind AND s.value = k.value)
      AND NOT EXISTS (SELECT 1 FROM public.merge_shared_contacts s
                      WHERE s.kind = k.kind AND s.value = k.value COLLATE "C")
    GROUP BY label;
    ALTER TABLE sp_candkeys ADD PRIMARY KEY (label);
    -- Each candidate weighed (distinct pairs of components: the strongest pair of names).
    -- (the comparisons inline, no function call per pair; the same arithmetic as
    -- syncpipe_internal.pair_weight(), which writes the parts in words for the queued pairs)
    CREATE UNLOGGED TABLE syncpipe_work.sp_candw AS
    SELECT DISTINCT ON (least(a_label, b_label), greatest(a_label, b_label)) *
    FROM (
        SELECT y.*,
               (CASE y.given
                    WHEN 'same' THEN round(least(8, (ln((0.9 * v_total
                                                       / greatest(coalesce(y.given_n, 1), 1))::float8) / ln(2.0::float8)))::numeric, 1)
                    WHEN 'nickname' THEN 3 WHEN 'typo' THEN 2 WHEN 'initial' THEN 1
                    WHEN 'different' THEN -4 ELSE 0 END
                + CASE y.family
                    WHEN 'same' THEN round(least(10, (ln((0.9 * v_total
                                                        / greatest(coalesce(y.family_n, 1), 1))::float8) / ln(2.0::float8)))::numeric, 1)
                    WHEN 'typo' THEN 2 WHEN 'initial' THEN 0.5 WHEN 'different' THEN -5 ELSE 0 END
                + CASE WHEN y.a_team = y.b_team THEN 10
                       WHEN y.a_team IS NOT NULL AND y.b_team IS NOT NULL THEN -3 ELSE 0 END
                + CASE WHEN y.a_middle <> y.b_middle THEN -3 ELSE 0 END
                + CASE y.phones WHEN 'shared' THEN 8 WHEN 'different' THEN -6 ELSE 0 END
                + CASE y.emails WHEN 'shared' THEN 9 WHEN 'different' THEN -1.5 ELSE 0 END
               )::real AS weight,
               -- names that can be one person's (as names_compatible() judges them)
               y.a_key = y.b_key
               OR string_to_array(y.a_key, ' ') <@ string_to_array(y.b_key, ' ')
               OR string_to_array(y.b_key, ' ') <@ string_to_array(y.a_key, ' ')
               OR (y.given IN ('same', 'nickname', 'typo', 'initial')
                   AND y.family IN ('same', 'typo')) AS fits
        FROM (
            SELECT x.*, ff.n AS given_n, fl.n AS family_n
            FROM (
                SELECT c.*,
                       CASE WHEN c.a_key = c.b_key AND c.a_first IS NOT NULL AND c.b_first IS NOT NULL THEN 'same' WHEN c.a_first IS NULL OR
                           c.b_first IS NULL OR c.a_first = '' OR c.b_first = '' THEN 'missing'
                           WHEN c.a_first = c.b_first THEN 'same' WHEN least(length(c.a_first),
                           length(c.b_first)) = 1 THEN CASE WHEN left(c.a_first, 1) =
                           left(c.b_first, 1) THEN 'initial' ELSE 'different' END WHEN
                           c.a_canons && c.b_canons THEN 'nickname' WHEN (CASE WHEN
                           least(length(c.a_first), length(c.b_first)) >= 7 THEN
                           extensions.levenshtein(c.a_first, c.b_first) <= 2 WHEN
                           least(length(c.a_first), length(c.b_first)) >= 3 THEN
                           extensions.levenshtein(c.a_first, c.b_first) <= 1 OR
                           (length(c.a_first) = length(c.b_first) AND
                           extensions.levenshtein(c.a_first, c.b_first) = 2 AND
                           translate(c.a_first, c.b_first, '') = '' AND translate(c.b_first,
                           c.a_first, '') = '') ELSE false END) OR (least(length(c.a_first),
                           length(c.b_first)) = 2 AND greatest(length(c.a_first),
                           length(c.b_first)) = 3 AND left(c.a_first, 2) = left(c.b_first, 2))
                           THEN 'typo' ELSE 'different' END AS given,
                       CASE WHEN c.a_key = c.b_key AND c.a_last IS NOT NULL AND c.b_last IS NOT NULL THEN 'same' WHEN c.a_last IS NULL OR c.b_last
                           IS NULL OR c.a_last = '' OR c.b_last = '' THEN 'missing' WHEN
                           c.a_last = c.b_last THEN 'same' WHEN least(length(c.a_last),
                           length(c.b_last)) = 1 THEN CASE WHEN left(c.a_last, 1) =
                           left(c.b_last, 1) THEN 'initial' ELSE 'different' END WHEN (CASE WHEN
                           least(length(c.a_last), length(c.b_last)) >= 7 THEN
                           extensions.levenshtein(c.a_last, c.b_last) <= 2 WHEN
                           least(length(c.a_last), length(c.b_last)) >= 3 THEN
                           extensions.levenshtein(c.a_last, c.b_last) <= 1 OR (length(c.a_last)
                           = length(c.b_last) AND extensions.levenshtein(c.a_last, c.b_last) = 2
                           AND translate(c.a_last, c.b_last, '') = '' AND translate(c.b_last,
                           c.a_last, '') = '') ELSE false END) OR (least(length(c.a_last),
                           length(c.b_last)) = 2 AND greatest(length(c.a_last),
                           length(c.b_last)) = 3 AND left(c.a_last, 2) = left(c.b_last, 2)) THEN
                           'typo' ELSE 'different' END AS family,
                       CASE WHEN ka.phones && kb.phones THEN 'shared'
                            WHEN ka.phones IS NOT NULL AND kb.phones IS NOT NULL
                            THEN 'different' END AS phones,
                       CASE WHEN ka.emails && kb.emails THEN 'shared'
                            WHEN ka.emails IS NOT NULL AND kb.emails IS NOT NULL
                            THEN 'different' END AS emails
                FROM sp_cands c
                LEFT JOIN sp_candkeys ka ON ka.label = c.a_label
                LEFT JOIN sp_candkeys kb ON kb.label = c.b_label
            ) x
            LEFT JOIN sp_freq ff ON ff.part = 'f' AND ff.value = x.a_first AND x.given = 'same'
            LEFT JOIN sp_freq fl ON fl.part = 'l' AND fl.value = x.a_last AND x.family = 'same'
            -- two different given and family names are no candidate at all (a one-word name
            -- against a two-word one is "missing", not a contradiction)
            WHERE NOT (x.given = 'different' AND x.family = 'different')
        ) y
    ) z
    ORDER BY least(a_label, b_label), greatest(a_label, b_label), weight DESC, a_norm, b_norm;
    ANALYZE sp_candw;
    -- (one CREATE TABLE AS for all kinds: no part of an INSERT runs in parallel)
    CREATE UNLOGGED TABLE syncpipe_work.sp_review AS
    SELECT l.a, l.b, l.rule, l.conf,
           jsonb_build_object(CASE l.rule WHEN 'email' THEN 'email' WHEN 'phone' THEN 'phone'
                                          ELSE 'name' END, l.detail,
                              'weight', l.weight, 'parts', jsonb_build_array(
                                  l.rule || ' ' || l.detail || ': +' || l.weight)) AS evidence
    FROM sp_links l
    LEFT JOIN sp_comp ca ON ca.node = l.a
    LEFT JOIN sp_comp cb ON cb.node = l.b
    WHERE l.conf <= v_auto AND coalesce(ca.label, l.a) <> coalesce(cb.label, l.b)
    UNION ALL
    -- Name links held back by conflicting personal phones.
    SELECT l.a, l.b, l.rule, v_fuzzy,
           jsonb_build_object('name', l.detail, 'weight', l.weight - 6,
                              'parts', jsonb_build_array(
                                  CASE l.rule WHEN 'name_team' THEN 'same name, same team'
                                              ELSE 'known nickname, same family name, same team'
                                  END || ': +' || l.weight,
                                  'different personal phones or e-mails, or a common one-word name: -6'))
    FROM sp_namelinks l
    LEFT JOIN sp_comp ca ON ca.node = l.a
    LEFT JOIN sp_comp cb ON cb.node = l.b
    WHERE l.conflict AND coalesce(ca.label, l.a) <> coalesce(cb.label, l.b)
    UNION ALL
    SELECT least(a_node, b_node), greatest(a_node, b_node), 'fuzzy_name', v_fuzzy,
           jsonb_build_object('a_name', CASE WHEN a_node < b_node THEN a_norm ELSE b_norm END,
                              'b_name', CASE WHEN a_node < b_node THEN b_norm ELSE a_norm END,
                              'similarity',
                              round(extensions.similarity(a_norm, b_norm)::numeric, 2),
                              'team_id', coalesce(a_team, b_team),
                              'candidate', CASE WHEN a_team = b_team THEN 'same team'
                                                ELSE 'beyond the team' END)
               || syncpipe_internal.pair_weight(
                      given, CASE WHEN given = 'same' THEN coalesce(a_first, b_first) END,
                      given_n, family, CASE WHEN family = 'same' THEN coalesce(a_last, b_last) END,
                      family_n, v_total,
                      CASE WHEN a_team = b_team THEN 'same'
                           WHEN a_team IS NULL OR b_team IS NULL THEN 'unknown'
                           ELSE 'different' END,
                      coalesce(a_middle <> b_middle, false), phones, emails) AS evidence
    FROM (SELECT w.*,
                 row_number() OVER (PARTITION BY a_label ORDER BY weight DESC, b_node) AS rank_a,
                 row_number() OVER (PARTITION BY b_label ORDER BY weight DESC, a_node) AS rank_b
          FROM sp_candw w
          WHERE weight >= v_review_min
            -- beyond the team: nothing that conflicts (their own phones or e-mails differ)
            AND (a_team = b_team
                 OR (phones IS DISTINCT FROM 'different' AND emails IS DISTINCT FROM 'different'))
            -- in a team: a similar or fitting name; beyond it: a fitting one
            AND (fits OR (a_team = b_team AND extensions.similarity(a_norm, b_norm) >= v_sim))) r
    WHERE rank_a <= v_per_record AND rank_b <= v_per_record;

    SELECT count(*), count(*) FILTER (WHERE label >= v_offset)
    INTO v_components, v_components_new
    FROM (SELECT DISTINCT label FROM sp_comp) d;
    RETURN (SELECT jsonb_build_object(
                'pending', count(*),
                'pending_new_agents', count(*) FILTER (WHERE source = 'new_agents'),
                'pending_members', count(*) FILTER (WHERE source = 'company_member'),
                'changed_records', count(*) FILTER (WHERE old_agent IS NOT NULL))
            FROM sp_pend) || jsonb_build_object(
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

-- Phase 2: write what merge_plan() worked out.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_apply(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_auto     integer := coalesce((p_options ->> 'auto_threshold')::integer, 70);
    v_per_record integer := coalesce((p_options ->> 'review_per_record')::integer, 3);
    v_offset   bigint := (SELECT node_offset FROM sp_meta);
    v_superseded integer;
    v_first    bigint;
    v_created  integer;
    v_retired  integer;
    v_matched  integer;
    v_count    integer;
    v_reviews  integer;
    v_golden   integer;
    v_bulk_a   boolean;
    v_bulk_s   boolean;
    v_bulk_k   boolean;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_target0', 'sp_target', 'sp_retire', 'sp_place',
        'sp_refresh', 'sp_grecs', 'sp_gkeys']);
    PERFORM syncpipe_internal.merge_phase('agents');
    -- Agents that lose a changed record are refreshed below.
    INSERT INTO public.merge_dirty_agents (agent_id)
    SELECT DISTINCT old_agent FROM sp_pend WHERE old_agent IS NOT NULL
    ON CONFLICT DO NOTHING;

    -- The agent of each component: its lowest existing agent; else the agent a changed
    -- record leaves empty; else a new one.
    CREATE UNLOGGED TABLE syncpipe_work.sp_target0 AS
        SELECT label, min(node) FILTER (WHERE node < v_offset) AS survivor
        FROM sp_comp GROUP BY label;
    UPDATE sp_target0 t SET survivor = x.old_agent
    FROM (
        SELECT DISTINCT ON (p.old_agent) p.old_agent, c.label
        FROM sp_pend p
        JOIN sp_comp c ON c.node = v_offset + p.pid
        WHERE p.old_agent IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM public.unified_agent_sources s
                          WHERE s.agent_id = p.old_agent
                            AND NOT EXISTS (SELECT 1 FROM sp_pend q
                                            WHERE q.source = s.source
                                              AND q.source_id = s.source_id))
          AND p.old_agent NOT IN (SELECT survivor FROM sp_target0 WHERE survivor IS NOT NULL)
        ORDER BY p.old_agent, c.label
    ) x
    WHERE t.label = x.label AND t.survivor IS NULL;
    v_first := syncpipe_internal.merge_allocate_ids('public.new_unified_agents', 'agent_id',
        (SELECT count(*) FROM sp_target0 WHERE survivor IS NULL));
    -- New agents take the allocated ids in label order.
    CREATE UNLOGGED TABLE syncpipe_work.sp_target AS
        SELECT label, coalesce(survivor, v_first - 1 + row_number() OVER (
                   PARTITION BY survivor IS NULL ORDER BY label)) AS survivor,
               survivor IS NULL AS created
        FROM sp_target0;
    ALTER TABLE sp_target ADD PRIMARY KEY (label);
    ANALYZE sp_target;

    -- Where each pending record goes, by which rule, with what confidence; with what the
    -- lineage keeps of it (one join here, read by the golden records and the lineage below).
    CREATE UNLOGGED TABLE syncpipe_work.sp_place AS
    WITH best AS (
        SELECT DISTINCT ON (node) node, rule, conf, weight
        FROM (SELECT a AS node, rule, conf, weight FROM sp_links WHERE conf > v_auto
              UNION ALL
              SELECT b, rule, conf, weight FROM sp_links WHERE conf > v_auto) l
        WHERE node >= v_offset
        ORDER BY node, conf DESC, weight DESC, rule
    )
    SELECT p.pid, t.survivor AS agent_id, t.created, coalesce(b.rule, 'single') AS rule,
           coalesce(b.conf, 100)::smallint AS conf, b.weight, p.source, p.source_id, p.old_agent,
           p.version, p.team_id, p.full_name, n.name_norm, n.name_key, n.first_name,
           n.last_name, n.middle, n.suffix
    FROM sp_pend p
    JOIN sp_person_names n ON n.uid = p.pid
    JOIN sp_comp c ON c.node = v_offset + p.pid
    JOIN sp_target t ON t.label = c.label
    LEFT JOIN best b ON b.node = v_offset + p.pid;
    ALTER TABLE sp_place ADD PRIMARY KEY (pid);
    ANALYZE sp_place;

    -- New agents are written once, complete: their golden record comes from this run.
    -- (a new agent's record without an automatic link is the agent's only record)
    CREATE UNLOGGED TABLE syncpipe_work.sp_grecs AS
        SELECT agent_id, source, source_id, full_name, name_norm, name_key, team_id,
               rule = 'single' AS single
        FROM sp_place WHERE created;
    CREATE UNLOGGED TABLE syncpipe_work.sp_gkeys AS
        SELECT x.agent_id, k.kind, k.value
        FROM sp_pkeys k JOIN sp_place x ON x.pid = k.pid
        WHERE x.created;
    PERFORM syncpipe_internal.merge_golden();
    v_bulk_a := syncpipe_internal.merge_bulk_begin('public.new_unified_agents',
                                        (SELECT count(*) FROM sp_golden));
    INSERT INTO public.new_unified_agents (agent_id, full_name, emails, phone_numbers,
        source_team_id, source_count, confidence_score) OVERRIDING SYSTEM VALUE
    SELECT t.survivor, g.full_name, g.emails, g.phones, g.team_id, g.sources,
           coalesce(f.conf, 100)
    FROM sp_target t
    JOIN sp_golden g ON g.agent_id = t.survivor
    LEFT JOIN sp_compconf f ON f.label = t.label
    WHERE t.created
    ORDER BY t.survivor;
    GET DIAGNOSTICS v_created = ROW_COUNT;
    -- Their contact keys (sp_golden holds exactly the new agents).
    v_bulk_k := syncpipe_internal.merge_bulk_begin('public.merge_agent_contacts',
                                        (SELECT count(*) FROM sp_pkeys), true);
    INSERT INTO public.merge_agent_contacts (kind, value, agent_id)
    SELECT 'e', unnest(emails), agent_id FROM sp_golden WHERE emails <> '{}'
    UNION ALL
    SELECT 'p', unnest(phones), agent_id FROM sp_golden WHERE phones <> '{}';
    IF v_bulk_k THEN
        PERFORM syncpipe_internal.merge_bulk_end('public.merge_agent_contacts');
    END IF;

    -- Agents joined by new evidence: the lowest id survives.
    CREATE UNLOGGED TABLE syncpipe_work.sp_retire AS
        SELECT c.node AS agent_id, t.survivor
        FROM sp_comp c JOIN sp_target t ON t.label = c.label
        WHERE c.node < v_offset AND c.node <> t.survivor;
    v_retired := syncpipe_internal.merge_retire_agents();

    PERFORM syncpipe_internal.merge_phase('lineage');
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
    WHERE old_agent IS NULL AND source_id !~ '^pending:';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_matched := v_matched + v_count;
    IF v_bulk_s THEN
        PERFORM syncpipe_internal.merge_bulk_end('public.unified_agent_sources');
    END IF;
    IF v_bulk_a THEN
        PERFORM syncpipe_internal.merge_bulk_end('public.new_unified_agents');
    END IF;

    -- Name frequencies, for the weights of later runs.
    INSERT INTO syncpipe_internal.merge_name_frequencies AS f (part, value, records)
    SELECT part, value, n
    FROM (SELECT 'f'::"char" AS part, first_name COLLATE "C" AS value, count(*) AS n
          FROM sp_place WHERE first_name IS NOT NULL AND source_id !~ '^pending:' GROUP BY 2
          UNION ALL
          SELECT 'l'::"char", last_name COLLATE "C", count(*)
          FROM sp_place WHERE last_name IS NOT NULL AND source_id !~ '^pending:' GROUP BY 2) x
    ON CONFLICT (part, value) DO UPDATE SET records = f.records + EXCLUDED.records;

    -- Shared contacts, as now known for every key the run touched.
    DELETE FROM public.merge_shared_contacts s
    WHERE EXISTS (SELECT 1 FROM sp_keyrecs k
                  WHERE k.kind = s.kind AND k.value = s.value COLLATE "C");
    INSERT INTO public.merge_shared_contacts (kind, value, records, names)
    SELECT kind, value, records, names FROM sp_shared;

    PERFORM syncpipe_internal.merge_phase('review_queue');
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
    side AS (
        SELECT e.node,
               CASE WHEN e.node >= v_offset THEN x.agent_id ELSE e.node END AS agent_id,
               jsonb_strip_nulls(jsonb_build_object(
                   'agent_id', CASE WHEN e.node >= v_offset THEN x.agent_id ELSE e.node END,
                   'source', coalesce(p.source, 'agent'), 'source_id', p.source_id,
                   'name', coalesce(p.full_name, g.full_name),
                   'team_id', CASE WHEN e.node >= v_offset THEN p.team_id
                                   ELSE g.source_team_id END,
                   'emails', to_jsonb(CASE WHEN e.node >= v_offset THEN k.emails
                                           ELSE g.emails END),
                   'phones', to_jsonb(CASE WHEN e.node >= v_offset THEN k.phones
                                           ELSE g.phone_numbers END),
                   'sources', CASE WHEN e.node < v_offset THEN g.source_count END)) AS doc
        FROM ends e
        LEFT JOIN sp_place x ON x.pid = e.node - v_offset AND e.node >= v_offset
        LEFT JOIN sp_pend p ON p.pid = e.node - v_offset AND e.node >= v_offset
        LEFT JOIN pkeys k ON k.pid = e.node - v_offset AND e.node >= v_offset
        LEFT JOIN public.new_unified_agents g ON g.agent_id = e.node AND e.node < v_offset
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
                 v.conf DESC, (v.evidence ->> 'weight')::numeric DESC NULLS LAST, v.a, v.b
    )
    INSERT INTO public.merge_review_queue (agent_id, candidate_agent_id, rule, confidence,
                                           evidence, weight)
    SELECT p.agent_id, p.candidate_agent_id, p.rule, p.conf, p.evidence, p.weight
    FROM pairs p
    WHERE NOT EXISTS (
        SELECT 1 FROM public.merge_decisions d
        JOIN public.new_unified_agents x ON x.agent_id = d.agent_low
        JOIN public.new_unified_agents y ON y.agent_id = d.agent_high
        WHERE least(coalesce(x.merged_into, x.agent_id), coalesce(y.merged_into, y.agent_id))
                  = p.agent_id
          AND greatest(coalesce(x.merged_into, x.agent_id), coalesce(y.merged_into, y.agent_id))
                  = p.candidate_agent_id)
    ON CONFLICT ((least(agent_id, candidate_agent_id)), (greatest(agent_id, candidate_agent_id)))
        WHERE status = 'open' DO NOTHING;
    GET DIAGNOSTICS v_reviews = ROW_COUNT;
    CREATE UNLOGGED TABLE syncpipe_work.sp_superseded (agent_id bigint,
                                                       candidate_agent_id bigint, new boolean);
    -- Across runs, too, an agent keeps only its review_per_record strongest open similar-name
    -- items: what one run over all the records keeps, and not what piles up when records
    -- arrive over many runs (or batches) and each run adds its own strongest to the last's.
    WITH touched AS (
        SELECT agent_id FROM public.merge_review_queue
        WHERE status = 'open' AND created_at = now() AND rule = 'fuzzy_name'
        UNION SELECT candidate_agent_id FROM public.merge_review_queue
        WHERE status = 'open' AND created_at = now() AND rule = 'fuzzy_name'
    ),
    ranked AS (
        SELECT id, row_number() OVER (PARTITION BY side ORDER BY weight DESC NULLS LAST, id) AS rk
        FROM (SELECT q.id, q.weight, q.agent_id AS side FROM public.merge_review_queue q
              WHERE q.status = 'open' AND q.rule = 'fuzzy_name'
                AND q.agent_id IN (SELECT agent_id FROM touched)
              UNION ALL
              SELECT q.id, q.weight, q.candidate_agent_id FROM public.merge_review_queue q
              WHERE q.status = 'open' AND q.rule = 'fuzzy_name'
                AND q.candidate_agent_id IN (SELECT agent_id FROM touched)) s
    ),
    gone AS (
        DELETE FROM public.merge_review_queue q
        WHERE q.id IN (SELECT id FROM ranked WHERE rk > v_per_record)
        RETURNING q.agent_id, q.candidate_agent_id, q.created_at = now() AS new
    )
    INSERT INTO sp_superseded SELECT * FROM gone;
    SELECT count(*) FILTER (WHERE NOT new), v_reviews - count(*) FILTER (WHERE new)
    INTO v_superseded, v_reviews FROM sp_superseded;

    PERFORM syncpipe_internal.merge_phase('golden_records');
    -- Existing agents that took records: confidence is the lowest link holding the component
    -- together, never above what the agents it joined already had.
    UPDATE public.new_unified_agents a
    SET confidence_score = least(coalesce(f.conf, 100), coalesce(j.low, 100))
    FROM sp_target t
    LEFT JOIN sp_compconf f ON f.label = t.label
    LEFT JOIN (SELECT c.label, min(g.confidence_score) AS low
               FROM sp_comp c JOIN public.new_unified_agents g ON g.agent_id = c.node
               WHERE c.node < v_offset GROUP BY c.label) j ON j.label = t.label
    WHERE a.agent_id = t.survivor AND NOT t.created
      AND a.confidence_score IS DISTINCT FROM least(coalesce(f.conf, 100), coalesce(j.low, 100));

    -- Golden records of the existing agents this run touched, and review flags.
    CREATE UNLOGGED TABLE syncpipe_work.sp_refresh AS
        SELECT survivor AS agent_id FROM sp_target WHERE NOT created
        UNION SELECT agent_id FROM public.merge_dirty_agents
        UNION SELECT agent_id FROM public.merge_review_queue
              WHERE status = 'open' AND created_at = now()
        UNION SELECT candidate_agent_id FROM public.merge_review_queue
              WHERE status = 'open' AND created_at = now()
        UNION SELECT agent_id FROM sp_superseded
        UNION SELECT candidate_agent_id FROM sp_superseded;
    ALTER TABLE sp_refresh ADD PRIMARY KEY (agent_id);
    v_golden := syncpipe_internal.merge_refresh_agents();
    DELETE FROM public.merge_dirty_agents;

    -- Members are matched in their current version (the feed is tracked by source_version).
    UPDATE public.unified_company_member m SET processed = true
    FROM sp_pend p
    WHERE p.source = 'company_member' AND p.source_id !~ '^pending:'
      AND m.id = p.source_id::bigint AND NOT m.processed;

    RETURN jsonb_build_object(
        'records_matched', v_matched,
        'agents_created', v_created,
        'agents_joined', (SELECT count(*) FROM sp_target WHERE NOT created),
        'agents_retired', v_retired,
        'agents_refreshed', v_golden,
        'review_items_added', v_reviews,
        'review_items_superseded', v_superseded,
        'bulk', v_bulk_a OR v_bulk_s,
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
    v_plan    jsonb;
    v_apply   jsonb := '{}';
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
        v_plan := syncpipe_internal.merge_plan(p_options);
        IF NOT v_dry THEN
            v_apply := syncpipe_internal.merge_apply(p_options);
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
        UPDATE public.unified_merge_logs
        SET status = 'failed', finished_at = clock_timestamp(), error_message = SQLERRM
        WHERE id = v_log;
        RETURN jsonb_build_object('status', 'failed', 'log_id', v_log, 'error', SQLERRM,
                                  'sqlstate', SQLSTATE);
    END;

    IF NOT v_keep THEN
        PERFORM syncpipe_internal.merge_work_clear();
    END IF;
    RETURN v_plan || v_apply || jsonb_build_object(
        'status', CASE WHEN v_dry THEN 'planned' ELSE 'success' END,
        'dry_run', v_dry, 'log_id', v_log,
        'seconds', round(extract(epoch FROM clock_timestamp() - v_started)::numeric, 3));
END;
$$;

-- A person's decision on a review item: accept merges the two agents (the lower id survives),
-- reject records that they are different people. Either is kept for every later run.
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
        RAISE EXCEPTION 'review item % does not exist (a later merge may have settled it)',
            p_review_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_item.status <> 'open' THEN
        RAISE EXCEPTION 'review item % was already %: by % at %', p_review_id, v_item.status,
            v_item.decided_by, v_item.decided_at USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(merged_into, agent_id) INTO v_a
    FROM public.new_unified_agents WHERE agent_id = v_item.agent_id;
    SELECT coalesce(merged_into, agent_id) INTO v_b
    FROM public.new_unified_agents WHERE agent_id = v_item.candidate_agent_id;
    -- The agents changed since the item was queued: say so rather than decide blindly.
    IF v_a = v_b THEN
        RAISE EXCEPTION 'review item % is settled already: both sides are now agent % (a later merge joined them); nothing to decide',
            p_review_id, v_a USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_a IS DISTINCT FROM v_item.agent_id OR v_b IS DISTINCT FROM v_item.candidate_agent_id THEN
        RAISE EXCEPTION 'review item % changed since it was queued: its agents are now % and %; list the queue again (syncpipe review) and decide on what it shows now',
            p_review_id, v_a, v_b USING ERRCODE = 'invalid_parameter_value';
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
