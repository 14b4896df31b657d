-- The merge's agents (merge_apply(), sql/functions/040_merge.sql): each component's agent,
-- new agents written complete, agents joined by new evidence retired, and the golden records
-- of the agents a run or a review decision touched.

-- Phase "agents": the agent of each component, the new agents and their contact keys, and the
-- agents joined by new evidence retired.
--   reads:   sp_meta, sp_pend, sp_comp, sp_links, sp_person_names, sp_pkeys, sp_compconf;
--            public.unified_agent_sources
--   writes:  sp_target0, sp_target(label, survivor, created): each component's agent (its
--                        lowest existing agent, else the agent a changed record leaves empty,
--                        else a new id);
--            sp_best(node, rule, conf, weight): each pending record's strongest automatic link;
--            sp_place(pid, agent_id, created, rule, conf, weight, source, source_id, old_agent,
--                     version, team_id, full_name, name_norm, name_key, first_name, last_name,
--                     middle, suffix): where each pending record goes and by which rule;
--            sp_grecs, sp_gkeys, sp_gconf (views over sp_place, sp_pkeys and sp_target,
--            dropped after use),
--            sp_golden (merge_golden(), the new agents);
--            sp_emptied(agent_id): the agents changed records leave without a record;
--            sp_retire(agent_id, survivor): agents joined by new evidence, and emptied agents
--                        whose records all went to other agents;
--            public.new_unified_agents, public.merge_agent_contacts, public.merge_dirty_agents
--            (and what merge_retire_agents() writes)
--   options: auto_threshold (70)
--   returns: {"agents_created", "agents_joined", "agents_retired", "bulk"}
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_agents(p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_auto     integer := coalesce((p_options ->> 'auto_threshold')::integer, 70);
    v_offset   bigint := (SELECT node_offset FROM sp_meta);
    v_first    bigint;
    v_created  integer;
    v_retired  integer;
    v_bulk_a   boolean;
    v_bulk_k   boolean;
    v_changed  boolean;
    v_leader   text := current_setting('parallel_leader_participation');
    v_merging  text := current_setting('syncpipe.merging', true);
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_target0', 'sp_target', 'sp_retire',
        'sp_emptied', 'sp_best', 'sp_place', 'sp_grecs', 'sp_gkeys', 'sp_gconf']);
    -- A record can have an old agent only where the lineage holds records (not in a first
    -- run: the two statements on changed records below would read 2M pending records for none).
    v_changed := EXISTS (SELECT 1 FROM public.unified_agent_sources);
    -- Agents that lose a changed record are refreshed below.
    IF v_changed THEN
        INSERT INTO public.merge_dirty_agents (agent_id)
        SELECT DISTINCT old_agent FROM sp_pend WHERE old_agent IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;

    -- The agent of each component: its lowest existing agent; else the agent a changed
    -- record leaves empty; else a new one.
    -- (a component's label is its smallest node: its lowest existing agent is the label, if
    -- the label is an agent at all; one row per component has node = label, no sort needed)
    CREATE UNLOGGED TABLE syncpipe_work.sp_target0 AS
        SELECT label, CASE WHEN label < v_offset THEN label END AS survivor
        FROM sp_comp WHERE node = label;
    -- The agents changed records leave empty: every record of theirs is pending, and none
    -- took a link to them (an agent that is a node of a component is that component's agent
    -- or retired into it, below, and cannot be reused for another).
    CREATE UNLOGGED TABLE syncpipe_work.sp_emptied AS
        SELECT DISTINCT p.old_agent AS agent_id
        FROM sp_pend p
        WHERE v_changed AND p.old_agent IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM public.unified_agent_sources s
                          WHERE s.agent_id = p.old_agent
                            AND NOT EXISTS (SELECT 1 FROM sp_pend q
                                            WHERE q.source = s.source
                                              AND q.source_id = s.source_id))
          AND NOT EXISTS (SELECT 1 FROM sp_comp k WHERE k.node = p.old_agent);
    -- (an emptied agent goes to the lowest of its records' components that have no agent
    -- yet, and such a component takes the lowest of the agents offered to it)
    IF v_changed THEN
        UPDATE sp_target0 t SET survivor = x.old_agent
        FROM (
            SELECT DISTINCT ON (y.label) y.old_agent, y.label
            FROM (
                SELECT DISTINCT ON (p.old_agent) p.old_agent, c.label
                FROM sp_pend p
                JOIN sp_emptied e ON e.agent_id = p.old_agent
                JOIN sp_comp c ON c.node = v_offset + p.pid
                JOIN sp_target0 n ON n.label = c.label AND n.survivor IS NULL
                ORDER BY p.old_agent, c.label
            ) y
            ORDER BY y.label, y.old_agent
        ) x
        WHERE t.label = x.label AND t.survivor IS NULL;
    END IF;
    v_first := syncpipe_internal.merge_allocate_ids('public.new_unified_agents', 'agent_id',
        (SELECT count(*) FROM sp_target0 WHERE survivor IS NULL));
    -- New agents take the allocated ids in label order.
    -- (numbered apart from the others: a sort by (survivor IS NULL, label) compares the
    -- boolean first and cannot take a short prefix of the label into its comparisons)
    CREATE UNLOGGED TABLE syncpipe_work.sp_target AS
        SELECT label, survivor, false AS created
        FROM sp_target0 WHERE survivor IS NOT NULL
        UNION ALL
        SELECT label, v_first - 1 + row_number() OVER (ORDER BY label), true
        FROM sp_target0 WHERE survivor IS NULL;
    ALTER TABLE sp_target ADD PRIMARY KEY (label);
    PERFORM syncpipe_internal.work_analyze('sp_target');

    -- Where each pending record goes, by which rule, with what confidence; with what the
    -- lineage keeps of it (one join here, read by the golden records and the lineage below).
    -- (each record's strongest automatic link, a table: the join below then runs in the
    -- parallel workers, where a hash of it built by one process kept them waiting)
    CREATE UNLOGGED TABLE syncpipe_work.sp_best AS
        SELECT DISTINCT ON (node) node, rule, conf, weight
        FROM (SELECT a AS node, rule, conf, weight FROM sp_links WHERE conf > v_auto
              UNION ALL
              SELECT b, rule, conf, weight FROM sp_links WHERE conf > v_auto) l
        WHERE node >= v_offset
        ORDER BY node, conf DESC, weight DESC, rule;
    PERFORM syncpipe_internal.work_analyze('sp_best', ARRAY['node']);
    -- (the workers join, the leader only writes the 2M wide rows: with the leader joining
    -- a share too, three busy processes shared 2 cores; 0.5 s of 6.5 less at 1M persons)
    PERFORM set_config('parallel_leader_participation', 'off', true);
    CREATE UNLOGGED TABLE syncpipe_work.sp_place AS
    SELECT p.pid, t.survivor AS agent_id, t.created, coalesce(b.rule, 'single') AS rule,
           coalesce(b.conf, 100)::smallint AS conf, b.weight, p.source, p.source_id, p.old_agent,
           p.version, p.team_id, p.full_name, n.name_norm, n.name_key, n.first_name,
           n.last_name, n.middle, n.suffix
    FROM sp_pend p
    JOIN sp_person_names n ON n.uid = p.pid
    JOIN sp_comp c ON c.node = v_offset + p.pid
    JOIN sp_target t ON t.label = c.label
    LEFT JOIN sp_best b ON b.node = v_offset + p.pid;
    PERFORM set_config('parallel_leader_participation', v_leader, true);
    ALTER TABLE sp_place ADD PRIMARY KEY (pid);
    PERFORM syncpipe_internal.work_analyze('sp_place', ARRAY['pid', 'agent_id', 'created',
                                                             'rule', 'old_agent', 'source',
                                                             'source_id']);

    -- New agents are written once, complete: their golden record comes from this run.
    -- (a new agent's record without an automatic link is the agent's only record; views,
    -- not tables: merge_golden() reads each once, and a first run would write 2M records and
    -- 4M keys only to read them back)
    CREATE VIEW syncpipe_work.sp_grecs AS
        SELECT agent_id, source, source_id, full_name, name_norm, name_key, team_id,
               rule = 'single' AS single
        FROM sp_place WHERE created;
    -- (the confidence of the components that have links; the others' is 100)
    CREATE VIEW syncpipe_work.sp_gconf AS
        SELECT t.survivor AS agent_id, f.conf
        FROM sp_target t JOIN sp_compconf f ON f.label = t.label
        WHERE t.created;
    CREATE VIEW syncpipe_work.sp_gkeys AS
        SELECT x.agent_id, k.kind, k.value
        FROM sp_pkeys k JOIN sp_place x ON x.pid = k.pid
        WHERE x.created;
    PERFORM syncpipe_internal.merge_golden();
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_grecs', 'sp_gkeys', 'sp_gconf']);
    v_bulk_a := syncpipe_internal.merge_bulk_begin('public.new_unified_agents',
                                        (SELECT count(*) FROM sp_golden));
    -- (sp_golden is written in agent_id order, and an INSERT's SELECT reads it in that
    -- order, one process: the key's index takes each new id at its right edge. Their keys are
    -- written below, not by the trigger that follows agents inserted by hand: the merge's
    -- entry point turns it off for the run, and so does this phase when called on its own.)
    PERFORM set_config('syncpipe.merging', 'on', true);
    INSERT INTO public.new_unified_agents (agent_id, full_name, emails, phone_numbers,
        source_team_id, source_count, confidence_score) OVERRIDING SYSTEM VALUE
    SELECT agent_id, full_name, emails, phones, team_id, sources, coalesce(conf, 100)
    FROM sp_golden;
    GET DIAGNOSTICS v_created = ROW_COUNT;
    PERFORM set_config('syncpipe.merging', coalesce(v_merging, ''), true);
    -- Their contact keys (sp_golden holds exactly the new agents).
    v_bulk_k := syncpipe_internal.merge_bulk_begin('public.merge_agent_contacts',
                                        (SELECT count(*) FROM sp_pkeys), true);
    -- (into the key's index, (value, kind, agent_id), in its order, so that each of its pages
    -- is written once, not once per row; a bulk write builds the index afterwards and needs
    -- no sort)
    EXECUTE format($q$
    INSERT INTO public.merge_agent_contacts (kind, value, agent_id)
    SELECT * FROM (
        SELECT 'e'::"char" AS kind, unnest(emails) AS value, agent_id
        FROM sp_golden WHERE emails <> '{}'
        UNION ALL
        SELECT 'p', unnest(phones), agent_id FROM sp_golden WHERE phones <> '{}'
    ) k
    %s
    $q$, CASE WHEN v_bulk_k THEN '' ELSE 'ORDER BY value COLLATE "C", kind, agent_id' END);
    IF v_bulk_k THEN
        PERFORM syncpipe_internal.merge_bulk_end('public.merge_agent_contacts');
    END IF;

    -- Agents joined by new evidence: the lowest id survives.
    CREATE UNLOGGED TABLE syncpipe_work.sp_retire AS
        SELECT c.node AS agent_id, t.survivor
        FROM sp_comp c JOIN sp_target t ON t.label = c.label
        WHERE c.node < v_offset AND c.node <> t.survivor;
    -- Emptied agents that no component took as its agent (a record that shares nothing with
    -- its old agent any more went to another): they are retired into the agent their records
    -- joined (the lowest, where they went to several), so that their ids stay resolvable and
    -- no agent without a record stays active; not into an agent a person told apart from
    -- it (such an agent stays as it was).
    IF v_changed THEN
        INSERT INTO sp_retire (agent_id, survivor)
        WITH rejected AS MATERIALIZED (
            SELECT agent_low, agent_high FROM syncpipe_internal.merge_decisions_now()
            WHERE decision = 'rejected'
        )
        SELECT DISTINCT ON (p.old_agent) p.old_agent, t.survivor
        FROM sp_pend p
        JOIN sp_emptied e ON e.agent_id = p.old_agent
        JOIN sp_comp c ON c.node = v_offset + p.pid
        JOIN sp_target t ON t.label = c.label
        WHERE NOT EXISTS (SELECT 1 FROM sp_target u WHERE u.survivor = p.old_agent)
          AND NOT EXISTS (SELECT 1 FROM rejected r
                          WHERE r.agent_low = least(p.old_agent, t.survivor)
                            AND r.agent_high = greatest(p.old_agent, t.survivor))
        ORDER BY p.old_agent, t.survivor;
    END IF;
    v_retired := syncpipe_internal.merge_retire_agents();
    IF v_bulk_a THEN
        PERFORM syncpipe_internal.merge_bulk_end('public.new_unified_agents');
    END IF;
    RETURN jsonb_build_object(
        'agents_created', v_created,
        'agents_joined', (SELECT count(*) FROM sp_target WHERE NOT created),
        'agents_retired', v_retired,
        'bulk', v_bulk_a);
END;
$$;

-- Golden records, from sp_grecs(agent_id, source, full_name, name_norm, name_key, team_id,
-- single), sp_gkeys(agent_id, kind, value) and sp_gconf(agent_id, conf) (tables or views),
-- into sp_golden(agent_id, full_name, emails, phones, team_id, sources, conf), written in
-- agent_id order: the most frequent (then most complete) name
-- variant, written the cleanest way it was seen; the union of normalized e-mails and phones; the team most
-- supported by the sources (the feed breaks ties); the number of sources. An agent with one
-- source takes it as it is; "single" marks the agents the caller knows to have one record,
-- which then skip the ranking (a first run: 600k of 1.3M agents); conf: the agent's
-- confidence where sp_gconf has one (the caller inserts the rows as they are).
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_golden()
RETURNS bigint
LANGUAGE plpgsql
-- (no hash aggregates: see the sorts below; undone when the function returns)
SET enable_hashagg = off
-- (the workers scan and sort, the leader only merges, ranks and writes: most of this
-- statement runs in the leader, and with the leader taking a share of the workers' part
-- too, three busy processes shared 2 cores; 1.5 s of 12.5 less at 1M persons)
SET parallel_leader_participation = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_golden']);
    -- (tables here are analyzed; views over analyzed tables need nothing)
    IF (SELECT relkind FROM pg_class WHERE oid = 'sp_grecs'::regclass) = 'r' THEN
        PERFORM syncpipe_internal.work_analyze('sp_grecs');
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = 'sp_gkeys'::regclass) = 'r' THEN
        PERFORM syncpipe_internal.work_analyze('sp_gkeys');
    END IF;
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
               WHEN position(',' IN v.name) > 0
                    AND v.name !~* ',\s*(jr|sr|ii|iii|iv)\.?\s*$'
               THEN split_part(v.name, ',', 2) || ' ' || split_part(v.name, ',', 1)
               ELSE v.name END), '\s+', ' ', 'g') AS full_name,
           coalesce(k.emails, '{}') AS emails, coalesce(k.phones, '{}') AS phones,
           h.team_id, h.sources::integer AS sources, f.conf
    FROM heads h
    -- (without the invisible characters that turn or hide text: a name written with a
    -- right-to-left override was its longest spelling, and shown reversed; not the joiners
    -- that Persian and Indic names need. An ASCII name holds none, and is not scanned: 1 s
    -- less at 1.3M agents.)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN octet_length(h.full_name) = length(h.full_name) THEN h.full_name
                    ELSE translate(h.full_name, U&'\200B\200E\200F\202A\202B\202C\202D'
                                                 '\202E\2060\2066\2067\2068\2069\FEFF', '')
               END AS name
    ) v
    LEFT JOIN contacts k ON k.agent_id = h.agent_id
    LEFT JOIN sp_gconf f ON f.agent_id = h.agent_id
    -- (in agent_id order: the heads, sorted, meet the contacts as they come out of their
    -- grouping, no hash of 1.3M arrays; and the caller inserts them in key order)
    ORDER BY h.agent_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Bring the contact keys (public.merge_agent_contacts) of the listed agents in step with
-- their emails and phone_numbers: an active agent's keys are its contacts, a retired or
-- deleted one has none. The caller holds the listed agents' row locks (it has just updated
-- them): an edit of the same agent in another session then waits for this transaction, and
-- the statements here, each with a snapshot taken after the lock was had, see the keys such
-- an edit committed before it. (Without the lock, the DELETE's snapshot missed the keys of an
-- edit committed while it waited, and the INSERT then collided with them.)
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_contacts_sync(p_agents bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    DELETE FROM public.merge_agent_contacts WHERE agent_id = ANY (p_agents);
    -- (an element set NULL by hand is no contact)
    INSERT INTO public.merge_agent_contacts (kind, value, agent_id)
    SELECT DISTINCT k.kind, k.value, a.agent_id
    FROM public.new_unified_agents a
    CROSS JOIN LATERAL (SELECT 'e'::"char", unnest(a.emails)
                        UNION ALL
                        SELECT 'p'::"char", unnest(a.phone_numbers)) AS k(kind, value)
    WHERE a.agent_id = ANY (p_agents) AND a.merged_into IS NULL AND k.value IS NOT NULL;
END;
$$;

-- Contact keys follow the agents edited outside a merge (by hand, through the API), as
-- merge_contacts_sync() makes them follow the agents a merge changes: an active agent's keys
-- are its e-mails and phones, a retired or deleted one has none. A key then never leads a new
-- record to an agent that is no longer there (the merge's probe of the keys need not read the
-- agents to check), and an agent inserted, brought back or given another e-mail is found by
-- it. Both run as their owner, so that a role allowed to edit agents needs no right on the
-- key table. For the triggers of sql/triggers/030_agent_contacts.sql:
-- agent_contacts_follow() per row of an INSERT, or of an UPDATE of agent_id, merged_into,
-- emails or phone_numbers, outside a merge (the row is locked by the statement that fired
-- it); agent_contacts_forget() per statement on DELETE (the gone rows) and TRUNCATE.
CREATE OR REPLACE FUNCTION syncpipe_internal.agent_contacts_follow()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.agent_id <> NEW.agent_id THEN
        PERFORM syncpipe_internal.merge_contacts_sync(ARRAY[OLD.agent_id, NEW.agent_id]);
    ELSE
        PERFORM syncpipe_internal.merge_contacts_sync(ARRAY[NEW.agent_id]);
    END IF;
    -- (retired: its records and review items go to its survivor in the next merge)
    IF NEW.merged_into IS NOT NULL
       AND (TG_OP = 'INSERT' OR OLD.merged_into IS DISTINCT FROM NEW.merged_into) THEN
        INSERT INTO syncpipe_internal.merge_retired_by_hand (agent_id) VALUES (NEW.agent_id)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION syncpipe_internal.agent_contacts_forget()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM public.merge_agent_contacts;
    ELSE
        -- (not the keys of an id inserted again by the same statement: a DELETE ... RETURNING
        -- feeding an INSERT fires the row trigger of the INSERT first)
        DELETE FROM public.merge_agent_contacts c USING gone_agents g
        WHERE c.agent_id = g.agent_id
          AND NOT EXISTS (SELECT 1 FROM public.new_unified_agents a
                          WHERE a.agent_id = g.agent_id);
    END IF;
    RETURN NULL;
END;
$$;

-- An agent retired by hand (merged_into set outside a merge) must lead to an active agent:
-- a merged_into chain that comes back to it (a cycle) or runs past 100 agents is refused
-- (its records would belong to no active agent, and no merge could tell where they go). For
-- the trigger of sql/triggers/030_agent_contacts.sql, after each row's INSERT or UPDATE of
-- merged_into (so that a statement that makes a cycle of several rows sees them all). (Runs
-- as its owner: the chain may pass agents the editing role cannot read.)
CREATE OR REPLACE FUNCTION syncpipe_internal.agent_merged_into_checked()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog
AS $$
DECLARE
    v_next bigint := NEW.merged_into;
    v_hops integer := 0;
BEGIN
    WHILE v_next IS NOT NULL LOOP
        IF v_next = NEW.agent_id OR v_hops >= 100 THEN
            RAISE EXCEPTION 'agent % cannot be merged into agent %: the merged_into chain from there %',
                NEW.agent_id, NEW.merged_into,
                CASE WHEN v_next = NEW.agent_id THEN 'leads back to it (a cycle)'
                     ELSE 'runs past 100 agents' END
                USING ERRCODE = 'check_violation',
                      HINT = 'Point merged_into at an active agent (one whose merged_into is null).';
        END IF;
        SELECT a.merged_into INTO v_next FROM public.new_unified_agents a WHERE a.agent_id = v_next;
        v_hops := v_hops + 1;
    END LOOP;
    RETURN NULL;
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
    v_updated bigint[];
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_grecs', 'sp_gkeys', 'sp_gconf',
        'sp_contacts_in']);
    PERFORM syncpipe_internal.work_analyze('sp_refresh');
    CREATE UNLOGGED TABLE syncpipe_work.sp_grecs AS
        SELECT s.agent_id, s.source, s.source_id, s.full_name, s.name_norm, s.name_key,
               s.team_id, false AS single
        FROM public.unified_agent_sources s JOIN sp_refresh f ON f.agent_id = s.agent_id;
    -- (their confidence is not recomputed here)
    CREATE VIEW syncpipe_work.sp_gconf AS
        SELECT NULL::bigint AS agent_id, NULL::integer AS conf WHERE false;
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

    -- (the agents updated are locked by this transaction; their keys follow them below. An
    -- agent not updated keeps its contacts, and its keys, which are in step: an edit by hand
    -- in another session brought them in step itself, by trigger)
    WITH updated AS (
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
                            r.agent_id IS NOT NULL)
    RETURNING a.agent_id
    )
    SELECT coalesce(array_agg(agent_id), '{}') INTO v_updated FROM updated;
    PERFORM syncpipe_internal.merge_contacts_sync(v_updated);
    RETURN cardinality(v_updated);
END;
$$;

-- The agent an id stands for now: itself while active, else the active agent at the end of
-- its merged_into chain (one hop after a merge; an agent retired by hand into a retired one
-- makes more). NULL when the chain reaches no active agent (a cycle made by hand).
CREATE OR REPLACE FUNCTION syncpipe_internal.agent_now(p_agent bigint)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog
AS $$
    WITH RECURSIVE chain (agent_id, next, depth) AS (
        SELECT agent_id, merged_into, 0 FROM public.new_unified_agents WHERE agent_id = p_agent
        UNION ALL
        SELECT a.agent_id, a.merged_into, c.depth + 1
        FROM chain c JOIN public.new_unified_agents a ON a.agent_id = c.next
        WHERE c.depth < 100
    )
    SELECT agent_id FROM chain WHERE next IS NULL;
$$;

-- Retire the agents listed in sp_retire(agent_id, survivor): they point to their survivor
-- (merged_into, kept one hop), their lineage moves, and their open review items follow
-- (an item that now joins an agent to itself is answered by the merge and removed, and so is
-- one that now joins two agents a person rejected).
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_retire_agents()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count integer;
BEGIN
    -- (its records go to the survivor: it counts none)
    UPDATE public.new_unified_agents a
    SET merged_into = r.survivor, needs_review = false, source_count = 0
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
    DELETE FROM syncpipe_internal.merge_retired_by_hand h USING sp_retire r
    WHERE h.agent_id = r.agent_id;
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
    -- An item that now joins two agents a person rejected is answered already (a rejected
    -- pair must not come back through a third agent joined to one of them); the other side
    -- keeps its review flag only while it has an open item.
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_remap_rejected']);
    CREATE UNLOGGED TABLE syncpipe_work.sp_remap_rejected AS
        SELECT m.id, m.a, m.b
        FROM sp_remap m
        JOIN syncpipe_internal.merge_decisions_now() r
          ON r.agent_low = least(m.a, m.b) AND r.agent_high = greatest(m.a, m.b)
        WHERE r.decision = 'rejected';
    DELETE FROM public.merge_review_queue q USING sp_remap_rejected m WHERE q.id = m.id;
    DELETE FROM sp_remap m USING sp_remap_rejected j WHERE m.id = j.id;
    UPDATE public.new_unified_agents a
    SET needs_review = EXISTS (SELECT 1 FROM public.merge_review_queue q
                               WHERE q.status = 'open'
                                 AND (q.agent_id = a.agent_id OR q.candidate_agent_id = a.agent_id))
    WHERE a.merged_into IS NULL
      AND a.agent_id IN (SELECT a FROM sp_remap_rejected UNION SELECT b FROM sp_remap_rejected);
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
    -- (the evidence keeps the agents the item was queued for: its records describe them)
    UPDATE public.merge_review_queue q
    SET agent_id = m.a, candidate_agent_id = m.b,
        evidence = CASE WHEN q.evidence ? 'queued_for' THEN q.evidence
                        ELSE q.evidence || jsonb_build_object(
                                 'queued_for', jsonb_build_array(q.agent_id, q.candidate_agent_id))
                   END
    FROM sp_remap m
    WHERE q.id = m.id AND q.status = 'open';
    RETURN v_count;
END;
$$;

-- Agents retired by hand (syncpipe_internal.merge_retired_by_hand) retired as the merge
-- retires agents, before a run plans: their records and open review items go to the active
-- agent at the end of their merged_into chain, whose golden record takes them. (An agent in
-- a cycle made by hand waits, and one brought back meanwhile is dropped from the list.)
-- Returns how many were retired.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_adopt_retired()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM syncpipe_internal.merge_retired_by_hand) THEN
        RETURN 0;
    END IF;
    DELETE FROM syncpipe_internal.merge_retired_by_hand h
    USING public.new_unified_agents a
    WHERE a.agent_id = h.agent_id AND a.merged_into IS NULL;
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_retire', 'sp_refresh']);
    CREATE UNLOGGED TABLE syncpipe_work.sp_retire AS
        SELECT agent_id, survivor
        FROM (SELECT h.agent_id, syncpipe_internal.agent_now(h.agent_id) AS survivor
              FROM syncpipe_internal.merge_retired_by_hand h) r
        WHERE survivor IS NOT NULL;
    v_count := syncpipe_internal.merge_retire_agents();
    CREATE UNLOGGED TABLE syncpipe_work.sp_refresh AS
        SELECT DISTINCT survivor AS agent_id FROM sp_retire;
    PERFORM syncpipe_internal.merge_refresh_agents();
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_retire', 'sp_refresh']);
    RETURN v_count;
END;
$$;

-- Phase "golden_records": the confidence and the stored golden records of the existing
-- agents this run touched, and their review flags.
--   reads:   sp_meta, sp_target, sp_compconf, sp_comp; public.merge_dirty_agents,
--            public.merge_review_queue (the items queued by this transaction)
--   writes:  sp_reviewed(agent_id, created): the agents given a review item by this run,
--            and whether it created them;
--            sp_refresh(agent_id), and what merge_refresh_agents() writes;
--            sp_dirty(agent_id): the marks of public.merge_dirty_agents taken off;
--            public.new_unified_agents
--   options: none
--   returns: the number of agents refreshed
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_golden_records()
RETURNS integer
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_offset   bigint := (SELECT node_offset FROM sp_meta);
    v_golden   integer;
    v_flagged  integer;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_refresh', 'sp_reviewed', 'sp_dirty']);
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

    -- The agents given a review item by this run. Those this run created were written
    -- complete from all their records (merge_agents()): only their flag is set here, not
    -- their golden record computed again (a first run: 28k agents at 1M persons).
    -- (and whether this transaction created them: created_at = now(), read by the key one
    -- agent at a time; the planner, whose statistics hold no agent created "now", took the
    -- run's new agents for one row and compared each with every reviewed agent: 28 s for a
    -- batch of 62k records at 200k persons)
    CREATE UNLOGGED TABLE syncpipe_work.sp_reviewed AS
        SELECT r.agent_id, x.created
        FROM (SELECT agent_id FROM public.merge_review_queue
              WHERE status = 'open' AND created_at = now()
              UNION SELECT candidate_agent_id FROM public.merge_review_queue
              WHERE status = 'open' AND created_at = now()) r
        CROSS JOIN LATERAL (SELECT a.created_at = now() AS created
                            FROM public.new_unified_agents a
                            WHERE a.agent_id = r.agent_id OFFSET 0) x;
    PERFORM syncpipe_internal.work_analyze('sp_reviewed');
    UPDATE public.new_unified_agents a SET needs_review = true
    FROM sp_reviewed r
    WHERE a.agent_id = r.agent_id AND r.created AND NOT a.needs_review
      AND NOT EXISTS (SELECT 1 FROM public.merge_dirty_agents d WHERE d.agent_id = r.agent_id);
    GET DIAGNOSTICS v_flagged = ROW_COUNT;

    -- Golden records of the existing agents this run touched, and review flags.
    -- (the marks are taken off as they are read: a mark committed later by another session,
    -- a source record deleted while this run refreshes, stays for the next run; deleting
    -- every mark at the end took those off unread)
    CREATE UNLOGGED TABLE syncpipe_work.sp_dirty (agent_id bigint);
    WITH taken AS (DELETE FROM public.merge_dirty_agents RETURNING agent_id)
    INSERT INTO sp_dirty SELECT agent_id FROM taken;
    CREATE UNLOGGED TABLE syncpipe_work.sp_refresh AS
        SELECT survivor AS agent_id FROM sp_target WHERE NOT created
        UNION SELECT agent_id FROM sp_dirty
        UNION SELECT agent_id FROM sp_reviewed WHERE NOT created;
    ALTER TABLE sp_refresh ADD PRIMARY KEY (agent_id);
    v_golden := syncpipe_internal.merge_refresh_agents();
    RETURN v_golden + v_flagged;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
