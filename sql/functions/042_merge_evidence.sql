-- The merge's evidence phases (merge_plan(), sql/functions/040_merge.sql): how common each
-- name is, which shared contact keys are evidence between which holders, the name links
-- within a team with their weights, and every link between two graph nodes.

-- Phase "shared_contacts", first part: how common each given and family name is (the weights
-- of name evidence: a rarer name weighs more).
--   reads:   syncpipe_internal.merge_name_frequencies (what earlier merges saw), sp_names
--   writes:  sp_freq(part, value, n): part 'f' given name, 'l' family name; n records
--   options: none
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_name_counts()
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_freq']);
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
    PERFORM syncpipe_internal.work_analyze('sp_freq');
END;
$$;

-- Phase "shared_contacts": contact evidence, judged per pair of holders (the guard: an office
-- line or an info@ mailbox held by different people never chains them).
--   reads:   sp_keyrecs, sp_names, sp_canon, sp_freq
--   writes:  sp_keynames(vid, kind, value, name_key, first_name, last_name, suffix, holders,
--                        canons, weak, names, records): the name variants on each key held
--                        under several names or by very many records;
--            sp_keygroups(kind, value, names, records): those keys;
--            sp_keycompat(kind, value, va, vb, fits): whether two variants fit one person;
--            sp_keymixed(kind, value, va, vb, fits, conflict): the pairs of the keys whose
--                        variants do not all fit, and whether two say "two people";
--            sp_keyallow(kind, value, va, vb): the pairs of variants that are evidence;
--            sp_shared(kind, value, records, names): the shared keys (not evidence between
--                        every two holders);
--            sp_keyholders(value, kind, node, vid): the holders of the shared keys that are
--                        still evidence between some of them
--   options: none
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_contact_evidence()
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_total   bigint;
    v_leader  text := current_setting('parallel_leader_participation');
    v_nestloop text := current_setting('enable_nestloop');
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_keynames', 'sp_keygroups', 'sp_keycompat',
        'sp_keymixed', 'sp_keyallow', 'sp_shared', 'sp_keyholders']);
    SELECT greatest(coalesce(sum(n), 0), 2) INTO v_total FROM sp_freq WHERE part = 'l';

    -- Contact evidence is judged per pair of holders, not per key. A key held by one name
    -- (or by names that all fit one person) is evidence between all its holders. A key held
    -- by names of different people (an office line, info@) is evidence only between holders
    -- whose names fit each other (Robert / Bob, a typo, "Miller, Robert", the same name
    -- twice), and none where a name fits two names that do not fit each other ("J. Smith"
    -- with "John Smith" and "Jane Smith": no chain through the ambiguous one). A key with
    -- very many holders or names is no evidence at all.
    -- sp_keynames: one row per name variant (vid) on a key that can be shared at all: held
    -- under several names, or by very many records (a third of the variants on keys held
    -- by several nodes at 1M persons); every statement after reads these.
    -- (the names and records of a key counted by windows over the grouped variants, which
    -- come out in key order: no second sort of all variants to count them, and the other
    -- two thirds are never written)
    -- (weak: a one-word name that many records carry, "Lily": it fits nobody else on a key)
    -- (grouped by the value first: a sort takes a short prefix of its first column into its
    -- comparisons, which a one-byte kind first throws away; 2 s of 7.5 at 1M persons)
    -- (the workers join and sort, the leader only merges, groups and counts: with the
    -- leader sorting a share too, three busy processes shared 2 cores; 0.4 s less at 1M
    -- persons)
    PERFORM set_config('parallel_leader_participation', 'off', true);
    CREATE UNLOGGED TABLE syncpipe_work.sp_keynames AS
        SELECT row_number() OVER () AS vid, g.kind, g.value, g.name_key, g.first_name,
               g.last_name, g.suffix, g.holders,
               coalesce(c.canons, ARRAY[g.first_name]) AS canons,
               (g.last_name IS NULL AND coalesce(f.n, 0) > greatest(20, v_total / 1000.0))
                   AS weak,
               g.names::integer AS names, g.records::integer AS records
        FROM (SELECT g.*, count(*) OVER w AS names, sum(g.holders) OVER w AS records
              FROM (SELECT k.value, k.kind, n.name_key, n.first_name, n.last_name, n.suffix,
                           count(*) AS holders
                    FROM sp_keyrecs k
                    JOIN sp_names n ON n.node = k.node
                    WHERE n.name_key IS NOT NULL
                    GROUP BY 1, 2, 3, 4, 5, 6) g
              WINDOW w AS (PARTITION BY g.value, g.kind)) g
        LEFT JOIN sp_canon c ON c.variant = g.first_name
        LEFT JOIN (SELECT value, sum(n) AS n FROM sp_freq GROUP BY value) f
               ON f.value = g.first_name AND g.last_name IS NULL
        WHERE g.names > 1 OR g.records > 20;
    PERFORM set_config('parallel_leader_participation', v_leader, true);
    PERFORM syncpipe_internal.work_analyze('sp_keynames', ARRAY['vid', 'kind', 'value',
                                                                'name_key', 'first_name',
                                                                'last_name', 'suffix']);
    -- The keys that can be shared at all, with their counts.
    CREATE UNLOGGED TABLE syncpipe_work.sp_keygroups AS
        SELECT kind, value, min(names) AS names, min(records) AS records
        FROM sp_keynames GROUP BY kind, value;
    PERFORM syncpipe_internal.work_analyze('sp_keygroups');
    -- Every two variants of a key with a few names: do they fit one person?
    -- (each unordered pair judged once, both orders written: names_compatible() is
    -- symmetric, and a plpgsql call per pair is most of this statement's time)
    CREATE UNLOGGED TABLE syncpipe_work.sp_keycompat AS
        WITH half AS (
            SELECT a.kind, a.value, a.vid AS va, b.vid AS vb,
                   syncpipe_internal.names_compatible(a.name_key, a.first_name, a.last_name,
                                                      a.suffix, a.canons, b.name_key,
                                                      b.first_name, b.last_name, b.suffix,
                                                      b.canons)
                   -- (on a key with more than two records: an office line's, not one
                   -- person's)
                   AND NOT ((a.weak OR b.weak) AND g.records > 2) AS fits
            FROM sp_keygroups g
            JOIN sp_keynames a ON a.kind = g.kind AND a.value = g.value
            JOIN sp_keynames b ON b.kind = a.kind AND b.value = a.value AND b.vid > a.vid
            WHERE g.names BETWEEN 2 AND 8 AND g.records <= 20
        )
        SELECT kind, value, va, vb, fits FROM half
        UNION ALL
        SELECT kind, value, vb, va, fits FROM half;
    PERFORM syncpipe_internal.work_analyze('sp_keycompat');
    -- The keys whose names do not all fit each other ("mixed"), with their pairs of variants
    -- and whether the two say "two different people" (only asked here: most keys fit).
    CREATE UNLOGGED TABLE syncpipe_work.sp_keymixed AS
        SELECT c.*,
               -- (syncpipe_internal.names_conflict(), written out: no function call per pair
               -- of names in Latin letters; two in Chinese, Japanese or Korean by their letters)
               CASE WHEN a.name_key ~ '[^a-z0-9 ]' AND b.name_key ~ '[^a-z0-9 ]'
                         AND syncpipe_internal.cjk_letters(concat(a.first_name, a.last_name))
                             IS NOT NULL
                         AND syncpipe_internal.cjk_letters(concat(b.first_name, b.last_name))
                             IS NOT NULL
                    THEN syncpipe_internal.cjk_letters(concat(a.first_name, a.last_name))
                         <> syncpipe_internal.cjk_letters(concat(b.first_name, b.last_name))
               ELSE (a.suffix IS DISTINCT FROM b.suffix
               OR ((coalesce(length(a.first_name) >= 2 AND length(b.first_name) >= 2 AND a.first_name <> b.first_name
                        AND NOT coalesce(a.canons && b.canons, false)
                        AND NOT (CASE WHEN least(length(a.first_name), length(b.first_name)) >= 7
                               THEN extensions.levenshtein(left(a.first_name, 255), left(b.first_name, 255)) <= 2
                               WHEN least(length(a.first_name), length(b.first_name)) >= 3
                               THEN extensions.levenshtein(left(a.first_name, 255), left(b.first_name, 255)) <= 1
                                    OR (length(a.first_name) = length(b.first_name)
                                        AND extensions.levenshtein(left(a.first_name, 255), left(b.first_name, 255)) = 2
                                        AND translate(a.first_name, b.first_name, '') = ''
                                        AND translate(b.first_name, a.first_name, '') = '')
                               ELSE false END)
                        AND NOT (least(length(a.first_name), length(b.first_name)) >= 3
                                 AND (starts_with(a.first_name, b.first_name) OR starts_with(b.first_name, a.first_name))), false)
                    OR coalesce(length(a.last_name) >= 2 AND length(b.last_name) >= 2 AND a.last_name <> b.last_name
                        AND extensions.levenshtein(left(a.last_name, 255), left(b.last_name, 255)) > 2
                        AND (a.last_name ~ '[^a-z0-9]' OR b.last_name ~ '[^a-z0-9]'
                             OR extensions.dmetaphone(a.last_name) <> extensions.dmetaphone(b.last_name)), false))
                   AND (coalesce(length(a.first_name) >= 2 AND length(b.last_name) >= 2 AND a.first_name <> b.last_name
                        AND NOT coalesce(a.canons && ARRAY[b.last_name], false)
                        AND NOT (CASE WHEN least(length(a.first_name), length(b.last_name)) >= 7
                               THEN extensions.levenshtein(left(a.first_name, 255), left(b.last_name, 255)) <= 2
                               WHEN least(length(a.first_name), length(b.last_name)) >= 3
                               THEN extensions.levenshtein(left(a.first_name, 255), left(b.last_name, 255)) <= 1
                                    OR (length(a.first_name) = length(b.last_name)
                                        AND extensions.levenshtein(left(a.first_name, 255), left(b.last_name, 255)) = 2
                                        AND translate(a.first_name, b.last_name, '') = ''
                                        AND translate(b.last_name, a.first_name, '') = '')
                               ELSE false END)
                        AND NOT (least(length(a.first_name), length(b.last_name)) >= 3
                                 AND (starts_with(a.first_name, b.last_name) OR starts_with(b.last_name, a.first_name))), false)
                        OR coalesce(length(a.last_name) >= 2 AND length(b.first_name) >= 2 AND a.last_name <> b.first_name
                        AND extensions.levenshtein(left(a.last_name, 255), left(b.first_name, 255)) > 2
                        AND (a.last_name ~ '[^a-z0-9]' OR b.first_name ~ '[^a-z0-9]'
                             OR extensions.dmetaphone(a.last_name) <> extensions.dmetaphone(b.first_name)), false)))) END AS conflict
        FROM sp_keycompat c
        JOIN sp_keynames a ON a.vid = c.va
        JOIN sp_keynames b ON b.vid = c.vb
        WHERE (c.kind, c.value) IN (SELECT kind, value FROM sp_keycompat WHERE NOT fits);
    PERFORM syncpipe_internal.work_analyze('sp_keymixed');
    -- Pairs of variants that are evidence: on a key whose names all fit, every pair; on a
    -- mixed key that is still one person's, every pair: one full name fits every other one
    -- (Robert Miller with Bob Miller and Robret Miller), or no two names say "two people"
    -- ("Joanne Gracia" and "Joanne Gaarcia" on joanne.garcia48@...); on the others, the
    -- pairs that fit where neither name fits two names that do not fit each other ("J. Smith"
    -- with "John Smith" and "Jane Smith": no chain through the ambiguous one).
    -- (set-based: hash joins over work tables, no correlated probe per pair; never a nested
    -- loop: the planner takes the fitting and the non-fitting pairs of one key for
    -- independent, may expect one row of the three-way join where there are thousands, and
    -- then scanned every pair once per row: 80 s for a 1% increment instead of 0.1 s)
    PERFORM set_config('enable_nestloop', 'off', true);
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyallow AS
    WITH personal AS (
        SELECT m.kind, m.value
        FROM sp_keymixed m JOIN sp_keynames v ON v.vid = m.va
        WHERE length(v.first_name) > 1 AND v.last_name IS NOT NULL
        GROUP BY m.kind, m.value, m.va HAVING bool_and(m.fits)
        UNION
        SELECT kind, value FROM sp_keymixed GROUP BY kind, value HAVING NOT bool_or(conflict)
    ),
    ambiguous AS (
        SELECT DISTINCT x.kind, x.value, x.va AS vid
        FROM sp_keymixed x
        JOIN sp_keymixed y ON y.kind = x.kind AND y.value = x.value AND y.va = x.va
                          AND y.vb > x.vb AND y.fits
        JOIN sp_keymixed z ON z.kind = x.kind AND z.value = x.value AND z.va = x.vb
                          AND z.vb = y.vb AND NOT z.fits
        WHERE x.fits
    )
    SELECT c.kind, c.value, c.va, c.vb
    FROM sp_keycompat c
    WHERE NOT EXISTS (SELECT 1 FROM sp_keymixed m
                      WHERE m.kind = c.kind AND m.value = c.value AND m.va = c.va
                        AND m.vb = c.vb)
    UNION ALL
    SELECT m.kind, m.value, m.va, m.vb
    FROM sp_keymixed m
    WHERE (m.kind, m.value) IN (SELECT kind, value FROM personal)
    UNION ALL
    SELECT m.kind, m.value, m.va, m.vb
    FROM sp_keymixed m
    WHERE m.fits
      AND (m.kind, m.value) NOT IN (SELECT kind, value FROM personal)
      AND NOT EXISTS (SELECT 1 FROM ambiguous x
                      WHERE x.kind = m.kind AND x.value = m.value AND x.vid = m.va)
      AND NOT EXISTS (SELECT 1 FROM ambiguous x
                      WHERE x.kind = m.kind AND x.value = m.value AND x.vid = m.vb);
    PERFORM set_config('enable_nestloop', v_nestloop, true);
    -- Shared keys (not evidence between every two holders): very many holders, many names,
    -- or two names that are not allowed together.
    CREATE UNLOGGED TABLE syncpipe_work.sp_shared AS
    SELECT g.kind, g.value, g.records, g.names
    FROM sp_keygroups g
    LEFT JOIN (SELECT kind, value, count(*) AS n FROM sp_keyallow GROUP BY kind, value) a
           ON a.kind = g.kind AND a.value = g.value
    WHERE g.records > 20 OR g.names > 8 OR coalesce(a.n, 0) < g.names * (g.names - 1);
    ALTER TABLE sp_shared ADD PRIMARY KEY (kind, value);
    PERFORM syncpipe_internal.work_analyze('sp_shared');
    -- The holders of the shared keys that are still evidence between some of them, with
    -- their variants (a known agent may hold several).
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyholders AS
        SELECT DISTINCT k.value, k.kind, k.node, v.vid  -- (the value first: see sp_keynames)
        FROM sp_shared s
        JOIN sp_keyrecs k ON k.kind = s.kind AND k.value = s.value
        JOIN sp_names n ON n.node = k.node
        JOIN sp_keynames v ON v.kind = k.kind AND v.value = k.value
             AND v.name_key = n.name_key AND v.first_name IS NOT DISTINCT FROM n.first_name
             AND v.last_name IS NOT DISTINCT FROM n.last_name
             AND v.suffix IS NOT DISTINCT FROM n.suffix
        WHERE s.records <= 20 AND s.names <= 8;
    PERFORM syncpipe_internal.work_analyze('sp_keyholders');
END;
$$;

-- Phase "links", first part: name links within a team and their weights.
--   reads:   sp_meta, sp_names, sp_canon, sp_pkeys, sp_shared, sp_freq;
--            public.merge_agent_contacts, public.merge_shared_contacts
--   writes:  sp_bigteams(team_id): the teams of more than 64 names (their blocks bucketed);
--            sp_bignames: their names with buckets (kb: by name, lb: by family name);
--            sp_namepairs(a, b, rule, detail, first_name, last_name, team_id): same name or
--                        known nickname in a team (name_team, nickname_team);
--            sp_nodephones(node, phones, emails): the personal contacts of every pending
--                        record and of the known agents in those pairs;
--            sp_namediffer(a, b): the pairs whose personal phones, or e-mails, all differ;
--            sp_namelinks(a, b, rule, detail, team_id, contacts_differ, conflict, weight):
--                        each pair weighed (rarer names weigh more), conflict = held back
--                        for review (personal contacts differ, a name two people in the team
--                        hold, a common one-word name)
--   options: none
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_name_links()
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_offset  bigint := (SELECT node_offset FROM sp_meta);
    v_total   bigint;
    v_pairs   text;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_namepairs', 'sp_nodephones',
        'sp_namediffer', 'sp_namelinks', 'sp_bigteams', 'sp_bignames']);
    SELECT greatest(coalesce(sum(n), 0), 2) INTO v_total FROM sp_freq WHERE part = 'l';

    -- Name links within a team: the same name (name_team), or a known nickname with the same
    -- family name ("Tom Rivera" / "Thomas Rivera": nickname_team, as strong as name_team).
    -- Different middle initials or suffixes are different people.
    -- In a team of more than 64 names (sp_bigteams) a block of one name, or of one family
    -- name, is cut into buckets of 8 in node order and each bucket compared with itself and its
    -- neighbours only: 3,000 namesakes in one team make 3,000 x 24 pairs at most, not 4.5
    -- million (the links of a bucket chain into the next, so records that nothing tells
    -- apart still end in one agent). The same teams are cut into buckets for the review's
    -- similar names (merge_review_candidates()).
    CREATE UNLOGGED TABLE syncpipe_work.sp_bigteams AS
        SELECT team_id FROM sp_names WHERE team_id IS NOT NULL
        GROUP BY team_id HAVING count(*) > 64;
    ALTER TABLE sp_bigteams ADD PRIMARY KEY (team_id);
    PERFORM syncpipe_internal.work_analyze('sp_bigteams');
    -- (one query for both: %1$s the names, %5$s the names they are compared with, %2$s / %3$s
    -- the bucket conditions of the two branches, %4$s the teams left out, %6$s DISTINCT or
    -- nothing)
    v_pairs := $q$
    SELECT %6$s least(p.node, n.node) AS a, greatest(p.node, n.node) AS b,
           CASE WHEN n.name_key = p.name_key THEN 'name_team' ELSE 'nickname_team' END AS rule,
           CASE WHEN n.name_key = p.name_key THEN p.name_norm
                ELSE least(p.first_name, n.first_name) || ' ~ '
                     || greatest(p.first_name, n.first_name) || ' ' || p.last_name
           END COLLATE "C" AS detail,
           p.first_name, p.last_name, p.team_id
    FROM %1$s p
    JOIN %5$s n ON n.team_id = p.team_id AND n.name_key = p.name_key %2$s
                   AND n.suffix IS NOT DISTINCT FROM p.suffix
                   AND (n.middle = p.middle OR n.middle IS NULL OR p.middle IS NULL)
    WHERE p.pending AND n.node <> p.node AND (NOT n.pending OR n.node < p.node) %4$s
    UNION ALL
    SELECT %6$s least(p.node, n.node), greatest(p.node, n.node), 'nickname_team',
           (least(p.first_name, n.first_name) || ' ~ ' || greatest(p.first_name, n.first_name)
            || ' ' || p.last_name) COLLATE "C",
           p.first_name, p.last_name, p.team_id
    FROM %1$s p
    JOIN sp_canon cp ON cp.variant = p.first_name
    JOIN %5$s n ON n.team_id = p.team_id AND n.last_name = p.last_name %3$s
                   AND n.first_name <> p.first_name
                   AND n.suffix IS NOT DISTINCT FROM p.suffix
                   AND (n.middle = p.middle OR n.middle IS NULL OR p.middle IS NULL)
    JOIN sp_canon cn ON cn.variant = n.first_name AND cn.canons && cp.canons
    WHERE p.pending AND n.node <> p.node AND (NOT n.pending OR n.node < p.node)
      AND n.name_key <> p.name_key
      AND position(' ' IN p.name_key) > 0 AND position(' ' IN n.name_key) > 0 %4$s
    $q$;
    -- (DISTINCT only where a known agent's lineage can give a node several rows: with
    -- pending records alone, a first run, each pair comes once and the sort is 0.6 s wasted
    -- at 1M persons)
    EXECUTE 'CREATE UNLOGGED TABLE syncpipe_work.sp_namepairs AS '
        || format(v_pairs, 'sp_names', '', '',
                  'AND NOT EXISTS (SELECT 1 FROM sp_bigteams t WHERE t.team_id = p.team_id)',
                  'sp_names',
                  CASE WHEN EXISTS (SELECT 1 FROM sp_names WHERE node < v_offset)
                       THEN 'DISTINCT' ELSE '' END);
    IF EXISTS (SELECT 1 FROM sp_bigteams) THEN
        -- (ordered by node and then by every name column: a known agent's lineage may give
        -- one node several rows, and the buckets must be the same in every run)
        CREATE UNLOGGED TABLE syncpipe_work.sp_bignames AS
            SELECT n.*,
                   (row_number() OVER (PARTITION BY n.team_id, n.name_key
                                       ORDER BY n.node, n.name_norm, n.first_name, n.last_name,
                                                n.middle, n.suffix) - 1) / 8 AS kb,
                   (row_number() OVER (PARTITION BY n.team_id, n.last_name
                                       ORDER BY n.node, n.name_norm, n.first_name, n.middle,
                                                n.suffix) - 1) / 8 AS lb
            FROM sp_names n JOIN sp_bigteams t ON t.team_id = n.team_id;
        PERFORM syncpipe_internal.work_analyze('sp_bignames');
        -- (each name once per bucket it is compared from, its own and the two next to it:
        -- the bucket is then part of the join's equality, and a block of thousands is hashed,
        -- not compared with itself whole)
        EXECUTE 'INSERT INTO sp_namepairs '
            || format(v_pairs, 'sp_bignames', 'AND n.near_kb = p.kb', 'AND n.near_lb = p.lb', '',
                      '(SELECT b.*, b.kb + d.k AS near_kb, b.lb + d.k AS near_lb
                        FROM sp_bignames b CROSS JOIN (VALUES (-1), (0), (1)) d(k))',
                      'DISTINCT');
    END IF;
    -- Personal phones and e-mails of the nodes of those pairs (shared ones left out): two
    -- records of one name in one team whose personal phones, or whose e-mails, all differ are
    -- namesakes until a person says otherwise (and so is a one-word name that many records
    -- carry): their pair goes to review instead.
    -- (every pending record's, grouped straight from sp_pkeys: nearly all of them are in a
    -- pair, and a filter by the pairs' nodes cost more than it saved)
    CREATE UNLOGGED TABLE syncpipe_work.sp_nodephones AS
        SELECT v_offset + k.pid AS node, array_agg(k.value) FILTER (WHERE k.kind = 'p') AS phones,
               array_agg(k.value) FILTER (WHERE k.kind = 'e') AS emails
        FROM sp_pkeys k
        WHERE NOT EXISTS (SELECT 1 FROM sp_shared s WHERE s.kind = k.kind AND s.value = k.value)
          AND NOT EXISTS (SELECT 1 FROM public.merge_shared_contacts s
                          WHERE s.kind = k.kind AND s.value = k.value)
        GROUP BY k.pid
        UNION ALL
        SELECT c.agent_id, array_agg(c.value) FILTER (WHERE c.kind = 'p'),
               array_agg(c.value) FILTER (WHERE c.kind = 'e')
        FROM public.merge_agent_contacts c
        WHERE c.agent_id IN (SELECT a FROM sp_namepairs WHERE a < v_offset
                             UNION SELECT b FROM sp_namepairs WHERE b < v_offset)
          AND NOT EXISTS (SELECT 1 FROM sp_shared s WHERE s.kind = c.kind AND s.value = c.value)
          AND NOT EXISTS (SELECT 1 FROM public.merge_shared_contacts s
                          WHERE s.kind = c.kind AND s.value = c.value)
        GROUP BY c.agent_id;
    -- (no key: both readers hash it, and its 2M-row index took longer to build than
    -- any probe saves)
    PERFORM syncpipe_internal.work_analyze('sp_namepairs', ARRAY['a', 'b', 'first_name',
                                                                 'last_name', 'team_id']);
    PERFORM syncpipe_internal.work_analyze('sp_nodephones', ARRAY['node']);
    -- The pairs whose personal phones, or whose e-mails, all differ.
    -- (inner joins, the pairs hashed and every node's contacts probed once: the left joins
    -- of all pairs below hashed the contacts of all two million nodes, twice; 0.7 s at 1M
    -- persons)
    CREATE UNLOGGED TABLE syncpipe_work.sp_namediffer AS
        SELECT DISTINCT n.a, n.b
        FROM sp_namepairs n
        JOIN sp_nodephones pa ON pa.node = n.a
        JOIN sp_nodephones pb ON pb.node = n.b
        WHERE (pa.phones IS NOT NULL AND pb.phones IS NOT NULL AND NOT pa.phones && pb.phones)
           OR (pa.emails IS NOT NULL AND pb.emails IS NOT NULL
               AND NOT pa.emails && pb.emails);
    PERFORM syncpipe_internal.work_analyze('sp_namediffer');
    -- The weight of a name link: the given and the family name, each worth more the rarer
    -- it is (log2 of m / u, u the share of records holding it), and the team.
    -- (each pair in one pass, every join in the parallel workers; the names two people hold
    -- are marked after, from the table: a CTE read twice would be written out and joined
    -- in one process)
    CREATE UNLOGGED TABLE syncpipe_work.sp_namelinks AS
    SELECT n.a, n.b, n.rule, n.detail, n.team_id, n.contacts_differ,
           n.contacts_differ
           -- a one-word name that many records carry ("Smith") is no evidence on its own
           OR (n.last_name IS NULL
               AND coalesce(ff.n, 0) + coalesce(fw.n, 0) > v_total / 1000.0) AS conflict,
           -- (a one-letter name is an initial, +1 or +0.5 whatever its count; a missing
           -- family name adds nothing)
           round((CASE WHEN n.rule <> 'name_team' THEN 3
                       WHEN length(n.first_name) = 1 THEN 1
                       ELSE least(8, (ln((0.9 * v_total / greatest(coalesce(ff.n, 1), 1))::float8) / ln(2.0::float8)))
                       END
                  + CASE WHEN n.last_name IS NULL THEN 0
                         WHEN length(n.last_name) = 1 THEN 0.5
                         ELSE least(10, (ln((0.9 * v_total / greatest(coalesce(fl.n, 1), 1))::float8) / ln(2.0::float8)))
                    END
                  + 10)::numeric, 1)::real AS weight
    FROM (
        SELECT n.*, d.a IS NOT NULL AS contacts_differ
        FROM sp_namepairs n
        LEFT JOIN sp_namediffer d ON d.a = n.a AND d.b = n.b
    ) n
    LEFT JOIN sp_freq ff ON ff.part = 'f' AND ff.value = n.first_name
    LEFT JOIN sp_freq fl ON fl.part = 'l' AND fl.value = n.last_name
    LEFT JOIN sp_freq fw ON fw.part = 'l' AND fw.value = n.first_name AND n.last_name IS NULL;
    -- One name in one team held by two people (two records whose contacts differ): no record
    -- of that name joins another by the name alone (a record without contacts would chain
    -- them).
    UPDATE sp_namelinks l SET conflict = true
    FROM (SELECT DISTINCT team_id, detail FROM sp_namelinks
          WHERE rule = 'name_team' AND contacts_differ) s
    WHERE l.team_id = s.team_id AND l.detail = s.detail AND l.rule = 'name_team'
      AND NOT l.conflict;
END;
$$;

-- Phase "links": every link between two graph nodes (a < b) on the ladder.
--   reads:   sp_keyrecs, sp_shared, sp_keyholders, sp_keyallow, sp_namelinks
--   writes:  sp_links(a, b, rule, conf, detail, weight): e-mail and phone links (a key shared
--                        by different people only between holders whose names fit), and the
--                        name links without a conflict
--   options: confidence_email (100), confidence_phone (90), confidence_name_team (80)
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_links(p_options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_email   integer := coalesce((p_options ->> 'confidence_email')::integer, 100);
    v_phone   integer := coalesce((p_options ->> 'confidence_phone')::integer, 90);
    v_name    integer := coalesce((p_options ->> 'confidence_name_team')::integer, 80);
    v_offset  bigint := (SELECT node_offset FROM sp_meta);
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_links']);
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
              -- (a join, not EXISTS: a subplan kept this branch, and so the sort of all
              -- pairs, out of the parallel workers; 0.6 s at 1M persons)
              FROM sp_keyholders x
              JOIN sp_keyholders y ON y.kind = x.kind AND y.value = x.value AND y.node > x.node
              LEFT JOIN sp_keyallow w ON w.kind = x.kind AND w.value = x.value
                                     AND w.va = x.vid AND w.vb = y.vid
              WHERE x.vid = y.vid OR w.va IS NOT NULL) x
        ORDER BY x.node, x.ynode, 4 DESC, x.value  -- (the same detail in every run)
    ) c
    UNION ALL
    SELECT a, b, rule, v_name, detail, weight FROM sp_namelinks WHERE NOT conflict
    UNION ALL
    -- A person's accept holds when a record changes its contacts or team: a changed record
    -- of an agent a person joined (one of its records was placed by a review decision)
    -- stays with it while its name is the one the person saw, as a rejected pair stays
    -- apart (merge_keep_apart()). It was matched again from scratch: with evidence weaker
    -- than automatic, it left for a new agent and the question the person had answered was
    -- queued again. A record renamed is matched from scratch: it may be another person now.
    -- (weight above any evidence's: the record's lineage keeps saying "review")
    SELECT p.old_agent, v_offset + p.pid, 'review', 100, NULL::text, 10::real
    FROM sp_pend p
    JOIN public.unified_agent_sources l ON l.source = p.source AND l.source_id = p.source_id
    JOIN sp_person_names n ON n.uid = p.pid
    WHERE p.old_agent IS NOT NULL
      AND n.name_norm = l.name_norm
      AND EXISTS (SELECT 1 FROM public.unified_agent_sources r
                  WHERE r.agent_id = p.old_agent AND r.match_rule = 'review')
      AND EXISTS (SELECT 1 FROM public.new_unified_agents g
                  WHERE g.agent_id = p.old_agent AND g.merged_into IS NULL);
    PERFORM syncpipe_internal.work_analyze('sp_links', ARRAY['a', 'b', 'conf']);
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
