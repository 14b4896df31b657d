-- The merge's review candidates (merge_plan(), sql/functions/040_merge.sql): similar names
-- blocked in a team and rare names beyond it, weighed, and the doubtful pairs of the run.

-- Phase "review", first part: candidate pairs of names across components.
--   reads:   sp_names, sp_comp, sp_canon, sp_bigteams
--   writes:  sp_cnames(label, team_id, name_norm, name_key, first_name, last_name, suffix,
--                      middle, node, pending, lcode, canons, key_n, last_n, big, fbucket,
--                      lbucket, cbucket): one row per name of a component in a team;
--            sp_cands(a_label, a_node, a_team, a_norm, a_key, a_first, a_last, a_suffix,
--                     a_middle, a_canons, b_...): candidate pairs, at least one side new, the
--                     same suffix (a differing "Jr." never matches)
--   options: none
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_review_candidates()
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_big boolean := EXISTS (SELECT 1 FROM sp_bigteams);
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_cnames', 'sp_cands']);
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
    -- (the names grouped in a subquery, not in a table of their own: written and read back,
    -- 1.5M wide rows cost a second at 1M persons)
    CREATE UNLOGGED TABLE syncpipe_work.sp_cnames AS
    SELECT x.*,
           -- how the family name sounds (a typo mostly keeps it)
           ln_.lcode, coalesce(k.canons, ARRAY[x.first_name]) AS canons,
           kn.n AS key_n, ln_.n AS last_n, coalesce(t.big, false) AS big,
           0::bigint AS fbucket, 0::bigint AS lbucket, 0::bigint AS cbucket
    FROM (SELECT coalesce(c.label, n.node) AS label, n.team_id, n.name_norm, n.name_key,
                 n.first_name, n.last_name, n.suffix, min(n.middle) AS middle,
                 min(n.node) AS node, bool_or(n.pending) AS pending
          FROM sp_names n
          LEFT JOIN sp_comp c ON c.node = n.node
          WHERE n.name_key IS NOT NULL
          GROUP BY 1, 2, 3, 4, 5, 6, 7) x
    LEFT JOIN sp_canon k ON k.variant = x.first_name
    -- (how many records carry the name, and the family name: hashed, not sorted)
    LEFT JOIN (SELECT name_key, count(*) AS n FROM sp_names
               WHERE name_key IS NOT NULL GROUP BY name_key) kn ON kn.name_key = x.name_key
    -- (a sound for Latin letters only: dmetaphone() gives other scripts nothing or noise,
    -- which would make every such pair sound alike; Cyrillic and Greek are in Latin letters
    -- by then, romanize())
    LEFT JOIN (SELECT last_name, count(*) AS n,
                      CASE WHEN last_name !~ '[^a-z0-9]' THEN extensions.dmetaphone(last_name)
                      END AS lcode
               FROM sp_names WHERE last_name IS NOT NULL GROUP BY last_name) ln_
           ON ln_.last_name = x.last_name
    -- (the teams of more than 64 names, counted for the name links: merge_name_links())
    LEFT JOIN (SELECT team_id, true AS big FROM sp_bigteams) t ON t.team_id = x.team_id;
    -- (a big team's blocks cut into buckets: only its rows are sorted, and rewritten)
    UPDATE sp_cnames x
    SET fbucket = b.fbucket, lbucket = b.lbucket, cbucket = b.cbucket
    FROM (SELECT node,
                 (row_number() OVER (PARTITION BY team_id, first_name
                                     ORDER BY last_name, node) - 1) / 8 AS fbucket,
                 (row_number() OVER (PARTITION BY team_id, last_name
                                     ORDER BY first_name, node) - 1) / 8 AS lbucket,
                 (row_number() OVER (PARTITION BY team_id, lcode
                                     ORDER BY first_name, node) - 1) / 8 AS cbucket
          FROM sp_cnames WHERE big AND team_id IS NOT NULL) b
    WHERE x.node = b.node;
    PERFORM syncpipe_internal.work_analyze('sp_cnames', ARRAY[
        'label', 'node', 'team_id', 'name_key', 'first_name', 'last_name', 'lcode', 'suffix',
        'pending', 'key_n', 'last_n', 'big', 'fbucket', 'lbucket', 'cbucket']);
    -- (the block joins in a team: %1$s the names compared with, %2$s, %3$s and %4$s the
    -- bucket conditions; with big teams each of their names is listed once for its own bucket
    -- and once for the one before, so that the bucket is part of the join's equality and a
    -- block of thousands of one name is hashed, not compared with itself whole; %5$s the
    -- columns of both sides, taken in each branch: joining the pairs' nodes back to sp_cnames
    -- hashed its 1.5M wide rows twice, a second at 1M persons)
    EXECUTE format($q$
    CREATE UNLOGGED TABLE syncpipe_work.sp_cands AS
    SELECT *
    FROM (
        -- in a team, the same given name: this bucket and the next
        SELECT %5$s
        FROM sp_cnames p JOIN %1$s n
          ON n.team_id = p.team_id AND n.first_name = p.first_name
         AND %2$s AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND (n.fbucket > p.fbucket OR n.node > p.node)
        UNION ALL
        -- in a team, the same family name, another given name
        SELECT %5$s
        FROM sp_cnames p JOIN %1$s n
          ON n.team_id = p.team_id AND n.last_name = p.last_name
         AND %3$s AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND (n.lbucket > p.lbucket OR n.node > p.node)
          AND (n.first_name = p.first_name) IS NOT TRUE
        UNION ALL
        -- in a team, family names that sound alike, another family name (a nickname and a
        -- typo: "Chris Johnsno" / "Christopher Johnson")
        SELECT %5$s
        FROM sp_cnames p JOIN %1$s n
          ON n.team_id = p.team_id AND n.lcode = p.lcode
         AND %4$s AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND (n.cbucket > p.cbucket OR n.node > p.node)
          AND n.last_name <> p.last_name AND (n.first_name = p.first_name) IS NOT TRUE
        UNION ALL
        -- beyond the team: the same rare name (key_n and last_n belong to the name: the
        -- condition on both sides lets the join hash the few rare ones only)
        SELECT %5$s
        FROM sp_cnames p JOIN sp_cnames n
          ON n.name_key = p.name_key AND n.node > p.node AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND p.key_n <= 6 AND n.key_n <= 6
          AND (n.team_id = p.team_id) IS NOT TRUE
        UNION ALL
        -- beyond the team: a rare family name and another, fitting, given name
        SELECT %5$s
        FROM sp_cnames p JOIN sp_cnames n
          ON n.last_name = p.last_name AND n.node > p.node AND n.label <> p.label
        WHERE (p.pending OR n.pending) AND p.last_n <= 12 AND n.last_n <= 12
          AND (n.team_id = p.team_id) IS NOT TRUE AND n.name_key <> p.name_key
    ) b
    WHERE a_suffix IS NOT DISTINCT FROM b_suffix
    $q$,
    CASE WHEN v_big THEN
        '(SELECT x.*, x.fbucket - d.k AS near_f, x.lbucket - d.k AS near_l,
                 x.cbucket - d.k AS near_c
          FROM sp_cnames x JOIN (VALUES (0), (1)) d(k) ON d.k = 0 OR x.big)'
    ELSE 'sp_cnames' END,
    CASE WHEN v_big THEN 'n.near_f = p.fbucket' ELSE 'n.fbucket IN (p.fbucket, p.fbucket + 1)' END,
    CASE WHEN v_big THEN 'n.near_l = p.lbucket' ELSE 'n.lbucket IN (p.lbucket, p.lbucket + 1)' END,
    CASE WHEN v_big THEN 'n.near_c = p.cbucket' ELSE 'n.cbucket IN (p.cbucket, p.cbucket + 1)' END,
    'p.label AS a_label, p.node AS a_node, p.team_id AS a_team, p.name_norm AS a_norm,
     p.name_key AS a_key, p.first_name AS a_first, p.last_name AS a_last,
     p.suffix AS a_suffix, p.middle AS a_middle, p.canons AS a_canons,
     n.label AS b_label, n.node AS b_node, n.team_id AS b_team, n.name_norm AS b_norm,
     n.name_key AS b_key, n.first_name AS b_first, n.last_name AS b_last,
     n.suffix AS b_suffix, n.middle AS b_middle, n.canons AS b_canons');
    PERFORM syncpipe_internal.work_analyze('sp_cands', ARRAY['a_label', 'b_label', 'a_first',
                                                             'a_last']);
END;
$$;

-- Phase "review", second part: each candidate weighed.
--   reads:   sp_meta, sp_cands, sp_comp, sp_nodephones, sp_namelinks, sp_shared, sp_freq;
--            public.merge_agent_contacts, public.merge_shared_contacts
--   writes:  sp_candlabels(label): the candidates' components and those of the held-back
--                        name links;
--            sp_candkeys(label, emails, phones): personal contacts of the candidates'
--                        components (shared keys left out);
--            sp_candw: one row per pair of components (its strongest pair of names): the
--                        columns of sp_cands, given / family ('same', 'nickname', 'typo',
--                        'initial', 'missing', 'different'), phones / emails ('shared',
--                        'different' or NULL), given_n, family_n (records holding the shared
--                        name), weight (rarer names weigh more, conflicts subtract), fits
--   options: none
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_candidate_weights()
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_offset  bigint := (SELECT node_offset FROM sp_meta);
    v_total   bigint;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_candlabels', 'sp_candkeys',
        'sp_candw']);
    SELECT greatest(coalesce(sum(n), 0), 2) INTO v_total FROM sp_freq WHERE part = 'l';
    -- Personal contacts of the components in those pairs (shared keys left out).
    -- (the components' labels first, a table: their nodes are then joined in the parallel
    -- workers, not in one process from a CTE; the held-back name links' labels looked up
    -- one by one: a few ten thousand probes of sp_comp's key, where a join hashed all its
    -- two million rows, twice)
    CREATE UNLOGGED TABLE syncpipe_work.sp_candlabels AS
        SELECT a_label AS label FROM sp_cands UNION SELECT b_label FROM sp_cands
        UNION SELECT coalesce((SELECT c.label FROM sp_comp c WHERE c.node = x.node), x.node)
              FROM (SELECT a AS node FROM sp_namelinks WHERE conflict
                    UNION ALL SELECT b FROM sp_namelinks WHERE conflict) x;
    PERFORM syncpipe_internal.work_analyze('sp_candlabels');
    CREATE UNLOGGED TABLE syncpipe_work.sp_candkeys AS
    WITH nodes AS NOT MATERIALIZED (
        SELECT c.label, c.node FROM sp_comp c JOIN sp_candlabels l ON l.label = c.label
    ),
    keys AS (
        -- (every pending record is in sp_comp, alone or not; its personal keys are in
        -- sp_nodephones already, shared ones left out)
        SELECT c.label, x.kind, x.value
        FROM nodes c JOIN sp_nodephones p ON p.node = c.node
        CROSS JOIN LATERAL (SELECT 'e'::"char", unnest(p.emails)
                            UNION ALL SELECT 'p'::"char", unnest(p.phones)) AS x(kind, value)
        WHERE c.node >= v_offset
        UNION ALL
        -- known agents: those in a component of this run, and those alone (not in sp_comp,
        -- their own label: without this their contacts would be missing and a conflict
        -- unseen whenever records arrive over several runs)
        SELECT e.label, m.kind, m.value
        FROM (SELECT c.label, c.node FROM nodes c WHERE c.node < v_offset
              UNION
              SELECT l.label, l.label FROM sp_candlabels l
              WHERE l.label < v_offset
                AND NOT EXISTS (SELECT 1 FROM sp_comp c WHERE c.node = l.label)) e
        JOIN public.merge_agent_contacts m ON m.agent_id = e.node
        WHERE NOT EXISTS (SELECT 1 FROM sp_shared s WHERE s.kind = m.kind AND s.value = m.value)
          AND NOT EXISTS (SELECT 1 FROM public.merge_shared_contacts s
                          WHERE s.kind = m.kind AND s.value = m.value)
    )
    SELECT label, array_agg(DISTINCT value) FILTER (WHERE kind = 'e') AS emails,
           array_agg(DISTINCT value) FILTER (WHERE kind = 'p') AS phones
    FROM keys
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
                       -- (two equal one-letter names are initials: "J." says as little
                       -- beside "J." as beside "John")
                       CASE WHEN c.a_key = c.b_key AND length(c.a_first) > 1 AND length(c.b_first) > 1 THEN 'same' WHEN c.a_first IS NULL OR
                           c.b_first IS NULL OR c.a_first = '' OR c.b_first = '' THEN 'missing'
                           WHEN c.a_first = c.b_first AND length(c.a_first) > 1 THEN 'same' WHEN least(length(c.a_first),
                           length(c.b_first)) = 1 THEN CASE WHEN left(c.a_first, 1) =
                           left(c.b_first, 1) THEN 'initial' ELSE 'different' END WHEN
                           c.a_canons && c.b_canons THEN 'nickname' WHEN (CASE WHEN
                           least(length(c.a_first), length(c.b_first)) >= 7 THEN
                           extensions.levenshtein(left(c.a_first, 255), left(c.b_first, 255)) <= 2 WHEN
                           least(length(c.a_first), length(c.b_first)) >= 3 THEN
                           extensions.levenshtein(left(c.a_first, 255), left(c.b_first, 255)) <= 1 OR
                           (length(c.a_first) = length(c.b_first) AND
                           extensions.levenshtein(left(c.a_first, 255), left(c.b_first, 255)) = 2 AND
                           translate(c.a_first, c.b_first, '') = '' AND translate(c.b_first,
                           c.a_first, '') = '') ELSE false END) OR (least(length(c.a_first),
                           length(c.b_first)) = 2 AND greatest(length(c.a_first),
                           length(c.b_first)) = 3 AND left(c.a_first, 2) = left(c.b_first, 2))
                           THEN 'typo' ELSE 'different' END AS given,
                       CASE WHEN c.a_key = c.b_key AND length(c.a_last) > 1 AND length(c.b_last) > 1 THEN 'same' WHEN c.a_last IS NULL OR c.b_last
                           IS NULL OR c.a_last = '' OR c.b_last = '' THEN 'missing' WHEN
                           c.a_last = c.b_last AND length(c.a_last) > 1 THEN 'same' WHEN least(length(c.a_last),
                           length(c.b_last)) = 1 THEN CASE WHEN left(c.a_last, 1) =
                           left(c.b_last, 1) THEN 'initial' ELSE 'different' END WHEN (CASE WHEN
                           least(length(c.a_last), length(c.b_last)) >= 7 THEN
                           extensions.levenshtein(left(c.a_last, 255), left(c.b_last, 255)) <= 2 WHEN
                           least(length(c.a_last), length(c.b_last)) >= 3 THEN
                           extensions.levenshtein(left(c.a_last, 255), left(c.b_last, 255)) <= 1 OR (length(c.a_last)
                           = length(c.b_last) AND extensions.levenshtein(left(c.a_last, 255), left(c.b_last, 255)) = 2
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
    ORDER BY least(a_label, b_label), greatest(a_label, b_label), weight DESC, a_norm, b_norm,
             a_node, b_node;  -- (ties broken the same way every run)
    PERFORM syncpipe_internal.work_analyze('sp_candw', ARRAY['a_label', 'b_label', 'weight']);
END;
$$;

-- Phase "review", last part: the doubtful pairs of the run.
--   reads:   sp_links, sp_bridgecut, sp_namelinks, sp_comp, sp_candw, sp_freq
--   writes:  sp_review(a, b, rule, conf, evidence): links under the threshold, name links
--                        held back, and the weighed candidates (each record's strongest)
--   options: auto_threshold (70), confidence_fuzzy_name (60), fuzzy_similarity (0.6),
--            review_min_weight (12), review_per_record (3)
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_review_pairs(p_options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_auto    integer := coalesce((p_options ->> 'auto_threshold')::integer, 70);
    v_fuzzy   integer := coalesce((p_options ->> 'confidence_fuzzy_name')::integer, 60);
    v_sim     real := coalesce((p_options ->> 'fuzzy_similarity')::real, 0.6);
    v_review_min real := coalesce((p_options ->> 'review_min_weight')::real, 12);
    v_per_record integer := coalesce((p_options ->> 'review_per_record')::integer, 3);
    v_total   bigint;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_review']);
    SELECT greatest(coalesce(sum(n), 0), 2) INTO v_total FROM sp_freq WHERE part = 'l';
    -- (one CREATE TABLE AS for all kinds: no part of an INSERT runs in parallel)
    CREATE UNLOGGED TABLE syncpipe_work.sp_review AS
    SELECT l.a, l.b, l.rule, l.conf,
           jsonb_build_object(CASE l.rule WHEN 'email' THEN 'email' WHEN 'phone' THEN 'phone'
                                          ELSE 'name' END, l.detail,
                              'weight', l.weight, 'parts', jsonb_build_array(
                                  l.rule || ' ' || l.detail || ': +' || l.weight)
                                  || CASE WHEN x.a IS NOT NULL THEN jsonb_build_array(
                                         'one side''s name fits two people this record is linked to: held for review')
                                     ELSE '[]' END) AS evidence
    FROM sp_links l
    LEFT JOIN sp_bridgecut x ON x.a = l.a AND x.b = l.b
    -- (labels looked up by sp_comp's key for the few rows that need one: joins hashed all
    -- its two million rows, four times)
    WHERE l.conf <= v_auto
      AND coalesce((SELECT c.label FROM sp_comp c WHERE c.node = l.a), l.a)
          <> coalesce((SELECT c.label FROM sp_comp c WHERE c.node = l.b), l.b)
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
    WHERE l.conflict
      AND coalesce((SELECT c.label FROM sp_comp c WHERE c.node = l.a), l.a)
          <> coalesce((SELECT c.label FROM sp_comp c WHERE c.node = l.b), l.b)
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
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
