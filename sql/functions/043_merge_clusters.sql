-- The merge's clusters (merge_plan(), sql/functions/040_merge.sql): the automatic links join
-- graph nodes into components, each with the confidence of the link that holds it together.

-- Connected components of sp_cc_edges(a, b) (both directions), set-based: every node first
-- takes the smallest of itself and its neighbours; then only a frontier moves on, the nodes
-- holding a label a neighbour lacks, pushing it one hop a round until no edge joins two labels
-- (most components are pairs and settle in the first step; a round costs what its frontier
-- touches, not a pass over every edge; a long chain is finished by merge_small_components()).
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
    PERFORM syncpipe_internal.work_analyze('sp_cc');
    PERFORM syncpipe_internal.work_analyze('sp_cc_edges');
    -- The first frontier: only a node with two or more neighbours can hold a label that a
    -- neighbour lacks (a node with one neighbour took the smaller of the two, and that
    -- neighbour holds it or a smaller one).
    CREATE UNLOGGED TABLE syncpipe_work.sp_cc_front AS
        SELECT node, label FROM sp_cc WHERE degree > 1;
    CREATE UNLOGGED TABLE syncpipe_work.sp_cc_next (node bigint, label bigint);
    LOOP
        v_rounds := v_rounds + 1;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM sp_cc_front);
        -- A long chain (records linked one by one) would take a round per link: after 32
        -- rounds the components still unsettled (two labels or more: every label of such a
        -- component borders another) are contracted instead, in about log n rounds.
        IF v_rounds > 32 THEN
            PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_cc_long', 'sp_cc_longlabel']);
            CREATE UNLOGGED TABLE syncpipe_work.sp_cc_long AS
                SELECT e.a, e.b
                FROM sp_cc_edges e JOIN sp_cc c ON c.node = e.a
                WHERE c.label IN (SELECT ca.label
                                  FROM sp_cc_edges x
                                  JOIN sp_cc ca ON ca.node = x.a
                                  JOIN sp_cc cb ON cb.node = x.b
                                  WHERE ca.label <> cb.label);
            PERFORM syncpipe_internal.merge_small_components('sp_cc_long', 'sp_cc_longlabel');
            UPDATE sp_cc c SET label = l.label
            FROM sp_cc_longlabel l WHERE l.node = c.node AND l.label <> c.label;
            EXIT;
        END IF;
        PERFORM syncpipe_internal.work_analyze('sp_cc_front');
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

-- Links that stop being automatic (p_cut(a, b), a < b): out of sp_gedges and sp_cc_edges,
-- their conf in sp_links set to the threshold (under review), and the components they split
-- labelled again (a node left with no link leaves sp_cc). Only those components are read
-- again, not the whole graph.
--   returns: the links cut
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_cut_links(p_cut text, p_auto integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_cut integer;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_cut_edges', 'sp_cut_labels']);
    EXECUTE format('DELETE FROM sp_gedges g USING %I c WHERE g.a = c.a AND g.b = c.b', p_cut);
    GET DIAGNOSTICS v_cut = ROW_COUNT;
    IF v_cut = 0 THEN
        RETURN 0;
    END IF;
    EXECUTE format('UPDATE sp_links l SET conf = $1
                    FROM %I c WHERE l.a = c.a AND l.b = c.b AND l.conf > $1', p_cut)
    USING p_auto;
    EXECUTE format('DELETE FROM sp_cc_edges e USING %I c
                    WHERE (e.a = c.a AND e.b = c.b) OR (e.a = c.b AND e.b = c.a)', p_cut);
    EXECUTE format('CREATE UNLOGGED TABLE syncpipe_work.sp_cut_edges AS
                    SELECT e.a, e.b
                    FROM sp_gedges e JOIN sp_cc c ON c.node = e.a
                    WHERE c.label IN (SELECT c2.label FROM sp_cc c2 JOIN %I x ON x.a = c2.node)',
                   p_cut);
    INSERT INTO sp_cut_edges SELECT b, a FROM sp_cut_edges;
    PERFORM syncpipe_internal.merge_small_components('sp_cut_edges', 'sp_cut_labels');
    EXECUTE format('DELETE FROM sp_cc c
                    WHERE c.label IN (SELECT c2.label FROM sp_cc c2 JOIN %I x ON x.a = c2.node)
                      AND NOT EXISTS (SELECT 1 FROM sp_cut_labels l WHERE l.node = c.node)',
                   p_cut);
    UPDATE sp_cc c SET label = l.label FROM sp_cut_labels l
    WHERE l.node = c.node AND l.label <> c.label;
    RETURN v_cut;
END;
$$;

-- Agents a person rejected as two people stay apart, whatever links a later run finds
-- between them (a record holding both one's e-mail and the other's). In a component that holds
-- both agents of a rejected pair, each such agent is a seed; every other node goes to the
-- nearest seed (breadth first over the automatic links, the lower seed on a tie), and the
-- links between two seeds' parts stop being automatic: they are left to the review, which
-- never proposes a rejected pair again.
--   reads:   sp_gedges, sp_cc; merge_decisions_now()
--   writes:  sp_apart(node, seed): the nodes of such components and their seed;
--            the links between two parts cut (merge_cut_links(): sp_gedges, sp_cc_edges,
--            sp_links, sp_cc)
--   returns: the links cut
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_keep_apart(p_auto integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_moved integer;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_apart', 'sp_apart_cut']);
    IF NOT EXISTS (SELECT 1 FROM public.merge_decisions WHERE decision = 'rejected') THEN
        RETURN 0;
    END IF;
    -- The rejected pairs as the agents are now (a retired side stands for its survivor),
    -- both in one component.
    CREATE UNLOGGED TABLE syncpipe_work.sp_apart AS
        SELECT DISTINCT s.node, s.node AS seed
        FROM syncpipe_internal.merge_decisions_now() r
        JOIN sp_cc ca ON ca.node = r.agent_low
        JOIN sp_cc cb ON cb.node = r.agent_high AND cb.label = ca.label
        CROSS JOIN LATERAL (VALUES (r.agent_low), (r.agent_high)) s(node)
        WHERE r.decision = 'rejected';
    IF NOT EXISTS (SELECT 1 FROM sp_apart) THEN
        RETURN 0;
    END IF;
    -- Every other node of those components to its nearest seed, one hop a round.
    LOOP
        INSERT INTO sp_apart (node, seed)
        SELECT e.b, min(p.seed)
        FROM sp_apart p
        JOIN sp_cc_edges e ON e.a = p.node
        WHERE NOT EXISTS (SELECT 1 FROM sp_apart q WHERE q.node = e.b)
        GROUP BY e.b;
        GET DIAGNOSTICS v_moved = ROW_COUNT;
        EXIT WHEN v_moved = 0;
    END LOOP;
    CREATE UNLOGGED TABLE syncpipe_work.sp_apart_cut AS
        SELECT g.a, g.b
        FROM sp_gedges g
        JOIN sp_apart pa ON pa.node = g.a
        JOIN sp_apart pb ON pb.node = g.b
        WHERE pa.seed <> pb.seed;
    RETURN syncpipe_internal.merge_cut_links('sp_apart_cut', p_auto);
END;
$$;

-- No chain across keys through a name that fits two people: a record whose name says too
-- little to tell people apart (no name, one word, a word and an initial, a nickname of
-- several names: "Chris") may share a phone with "John Smith" and an e-mail with "Jane
-- Smith". Each key alone is evidence (the names on it fit), but together the two links would
-- make one agent of two people. Vague records linked to each other count as one (a chain
-- "Smith" - "J. Smith" is no better than one of them). Where such records are all that holds
-- two parts of a component together, and the parts' names say "two people" (given or family
-- names that are no nickname, typo or prefix of each other, in either word order, neither
-- name's words all in the other's; or different suffixes), the vague records' links into
-- those parts stop being automatic: they are left to the review. Parts held together by
-- anything else stay one agent.
-- (The same guard within one key is merge_contact_evidence()'s.)
--   reads:   sp_gedges, sp_cc, sp_names, sp_canon
--   writes:  sp_bridgecut(a, b): the links cut (merge_cut_links(): sp_gedges, sp_cc_edges,
--            sp_links, sp_cc); sp_bridge*, scratch
--   returns: the links cut
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_split_bridges(p_auto integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_bridgecut', 'sp_bridgevague',
        'sp_bridgevv', 'sp_bridgegroup', 'sp_bridgehops', 'sp_bridgepair', 'sp_bridgeedges',
        'sp_bridgelabel']);
    -- The vague nodes. (one small table a step: the planner sees how few rows each holds)
    CREATE UNLOGGED TABLE syncpipe_work.sp_bridgevague AS
        -- (a pending record has one name; a known agent is vague only if every name of its
        -- lineage is)
        WITH n AS NOT MATERIALIZED (
            SELECT n.node AS x, n.pending,
                   coalesce(n.name_key IS NULL OR n.last_name IS NULL OR length(n.first_name) <= 1
                            OR length(n.last_name) <= 1
                            -- (a nickname of several names, not a name of its own)
                            OR coalesce(cardinality(c.canons) > 1
                                        AND n.first_name <> ALL (c.canons), false),
                            true) AS vague
            FROM sp_names n LEFT JOIN sp_canon c ON c.variant = n.first_name
        )
        SELECT x FROM n WHERE pending AND vague
        UNION ALL
        SELECT x FROM n WHERE NOT pending GROUP BY x HAVING bool_and(vague);
    ALTER TABLE sp_bridgevague ADD PRIMARY KEY (x);
    PERFORM syncpipe_internal.work_analyze('sp_bridgevague');
    -- Vague nodes linked to each other form one group (labelled by its lowest node).
    CREATE UNLOGGED TABLE syncpipe_work.sp_bridgevv AS
        SELECT e.a, e.b
        FROM sp_gedges e
        JOIN sp_bridgevague va ON va.x = e.a
        JOIN sp_bridgevague vb ON vb.x = e.b;
    INSERT INTO sp_bridgevv SELECT b, a FROM sp_bridgevv;
    PERFORM syncpipe_internal.merge_small_components('sp_bridgevv', 'sp_bridgegroup');
    -- Each group's links to the nodes that are not vague, where it has two such neighbours
    -- or more.
    CREATE UNLOGGED TABLE syncpipe_work.sp_bridgehops AS
        SELECT coalesce(g.label, v.x) AS g, v.x, e.y
        FROM sp_bridgevague v
        JOIN (SELECT a AS x, b AS y FROM sp_gedges UNION ALL SELECT b, a FROM sp_gedges) e
          ON e.x = v.x
        LEFT JOIN sp_bridgegroup g ON g.node = v.x
        WHERE NOT EXISTS (SELECT 1 FROM sp_bridgevague w WHERE w.x = e.y);
    DELETE FROM sp_bridgehops
    WHERE g IN (SELECT g FROM sp_bridgehops GROUP BY g HAVING count(DISTINCT y) = 1);
    PERFORM syncpipe_internal.work_analyze('sp_bridgehops');
    -- The pairs of a group's neighbours whose names say "two people": names_conflict(),
    -- unless the words of one name are all in the other ("Robert Smith" in "James Robert
    -- Smith", "Teresa Johnson" in "Teresa Johnson-Logan", "Smith John"); two in Chinese,
    -- Japanese or Korean by their letters.
    CREATE UNLOGGED TABLE syncpipe_work.sp_bridgepair AS
    WITH named AS (
        SELECT DISTINCT h.g, h.y, n.first_name AS f, n.last_name AS l, n.suffix,
               string_to_array(n.name_key, ' ') AS words,
               coalesce(c.canons, ARRAY[n.first_name]) AS canons,
               CASE WHEN n.name_key ~ '[^a-z0-9 ]'
                    THEN syncpipe_internal.cjk_letters(concat(n.first_name, n.last_name))
               END AS cjk
        FROM sp_bridgehops h
        JOIN sp_names n ON n.node = h.y
        LEFT JOIN sp_canon c ON c.variant = n.first_name
    )
    SELECT DISTINCT p.g, p.y, q.y AS z
    FROM named p
    JOIN named q ON q.g = p.g AND q.y > p.y
    WHERE CASE WHEN p.cjk IS NOT NULL AND q.cjk IS NOT NULL THEN p.cjk <> q.cjk
               ELSE (p.suffix IS DISTINCT FROM q.suffix
       OR (NOT (p.words <@ q.words OR q.words <@ p.words)
           AND (syncpipe_internal.given_names_differ(p.f, q.f, p.canons, q.canons)
                OR syncpipe_internal.family_names_differ(p.l, q.l))
           AND (syncpipe_internal.given_names_differ(p.f, q.l, p.canons, ARRAY[q.l])
                OR syncpipe_internal.family_names_differ(p.l, q.f)))) END;
    IF NOT EXISTS (SELECT 1 FROM sp_bridgepair) THEN
        CREATE UNLOGGED TABLE syncpipe_work.sp_bridgecut (a bigint, b bigint);
        RETURN 0;
    END IF;
    -- Their components without any vague node: are the two parts still one?
    CREATE UNLOGGED TABLE syncpipe_work.sp_bridgeedges AS
        SELECT e.a, e.b
        FROM sp_gedges e JOIN sp_cc c ON c.node = e.a
        WHERE c.label IN (SELECT c2.label FROM sp_cc c2 JOIN sp_bridgepair p ON p.y = c2.node)
          AND NOT EXISTS (SELECT 1 FROM sp_bridgevague v WHERE v.x = e.a)
          AND NOT EXISTS (SELECT 1 FROM sp_bridgevague v WHERE v.x = e.b);
    INSERT INTO sp_bridgeedges SELECT b, a FROM sp_bridgeedges;
    PERFORM syncpipe_internal.merge_small_components('sp_bridgeedges', 'sp_bridgelabel');
    -- The links of a group into two parts that stay apart without it are cut.
    CREATE UNLOGGED TABLE syncpipe_work.sp_bridgecut AS
        SELECT DISTINCT least(h.x, h.y) AS a, greatest(h.x, h.y) AS b
        FROM sp_bridgepair p
        LEFT JOIN sp_bridgelabel ly ON ly.node = p.y
        LEFT JOIN sp_bridgelabel lz ON lz.node = p.z
        JOIN sp_bridgehops h ON h.g = p.g AND h.y IN (p.y, p.z)
        WHERE coalesce(ly.label, p.y) <> coalesce(lz.label, p.z);
    RETURN syncpipe_internal.merge_cut_links('sp_bridgecut', p_auto);
END;
$$;

-- Connected components of an edge table (both directions), into p_out(node, label), label =
-- the smallest node of the component. Each round maps every node of the graph to the
-- smallest of itself and its neighbours, follows those maps to their ends (a node that is
-- the smallest of its neighbourhood; pointer jumping, about log n steps), and contracts the
-- graph onto those nodes (the links between two of them, each once); every node's label
-- follows. The ends are never neighbours of each other (a chain keeps at most half of its
-- nodes a round), so a chain of n records numbered in any order takes about log n rounds (one
-- hop a round took n). A component's smallest node always maps to itself: it is what is
-- left. (Work tables made once and refilled: a table made and dropped per round would hold
-- a lock per round until the transaction ends.)
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_small_components(p_edges text, p_out text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_moved bigint;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY[p_out, 'sp_sc_edges', 'sp_sc_next',
        'sp_sc_min']);
    EXECUTE format('CREATE UNLOGGED TABLE syncpipe_work.%I AS
                    SELECT DISTINCT a AS node, a AS label FROM %I', p_out, p_edges);
    EXECUTE format('CREATE UNLOGGED TABLE syncpipe_work.sp_sc_edges AS
                    SELECT DISTINCT a, b FROM %I WHERE a <> b', p_edges);
    CREATE UNLOGGED TABLE syncpipe_work.sp_sc_next (a bigint, b bigint);
    CREATE UNLOGGED TABLE syncpipe_work.sp_sc_min (node bigint PRIMARY KEY, m bigint);
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM sp_sc_edges);
        PERFORM syncpipe_internal.work_analyze('sp_sc_edges');
        TRUNCATE sp_sc_min;
        INSERT INTO sp_sc_min SELECT a, least(a, min(b)) FROM sp_sc_edges GROUP BY a;
        PERFORM syncpipe_internal.work_analyze('sp_sc_min');
        LOOP
            UPDATE sp_sc_min x SET m = y.m
            FROM sp_sc_min y WHERE y.node = x.m AND y.m < x.m;
            GET DIAGNOSTICS v_moved = ROW_COUNT;
            EXIT WHEN v_moved = 0;
        END LOOP;
        EXECUTE format('UPDATE %I o SET label = x.m FROM sp_sc_min x
                        WHERE o.label = x.node AND x.m < x.node', p_out);
        TRUNCATE sp_sc_next;
        INSERT INTO sp_sc_next
            SELECT DISTINCT xa.m, xb.m
            FROM sp_sc_edges e
            JOIN sp_sc_min xa ON xa.node = e.a
            JOIN sp_sc_min xb ON xb.node = e.b
            WHERE xa.m <> xb.m;
        TRUNCATE sp_sc_edges;
        INSERT INTO sp_sc_edges SELECT a, b FROM sp_sc_next;
    END LOOP;
    DROP TABLE sp_sc_edges, sp_sc_next, sp_sc_min;
END;
$$;

-- Phase "clusters": components of the automatic links, and their confidence.
--   reads:   sp_meta, sp_links, sp_pend, sp_names, sp_canon
--   writes:  sp_gedges(a, b, conf): one (strongest) automatic link per pair of nodes;
--            sp_comp(node, label): every pending record (alone or not) and every known agent
--                        joined to one, label = the smallest node of its component;
--            sp_compconf(label, low, high, conf): conf = the lowest link that holds the
--                        component together (components of mixed links cut level by level);
--            sp_mixnodes(node, label), sp_mixedges(a, b, conf, label): the nodes and links
--                        of the components of mixed links;
--            sp_cc_edges, sp_cc (merge_label_components(), scratch);
--            sp_apart, and links cut in sp_gedges and sp_links (merge_keep_apart(): agents
--            a person rejected as two people stay apart);
--            sp_bridgecut, and links cut likewise (merge_split_bridges(): no chain through
--            a vague name across two keys)
--   options: auto_threshold (70: links above it are automatic)
--   returns: the rounds merge_label_components() took
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_clusters(p_options jsonb DEFAULT '{}')
RETURNS integer
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_auto    integer := coalesce((p_options ->> 'auto_threshold')::integer, 70);
    v_offset  bigint := (SELECT node_offset FROM sp_meta);
    v_level   integer;
    v_rounds  integer := 0;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_gedges', 'sp_cc_edges', 'sp_comp',
        'sp_compconf', 'sp_mixnodes', 'sp_mixedges']);
    -- One (strongest) automatic link per pair of nodes, both directions.
    CREATE UNLOGGED TABLE syncpipe_work.sp_gedges AS
        SELECT a, b, max(conf) AS conf FROM sp_links WHERE conf > v_auto GROUP BY a, b;
    PERFORM syncpipe_internal.work_analyze('sp_gedges');
    CREATE UNLOGGED TABLE syncpipe_work.sp_cc_edges AS
        SELECT a, b FROM sp_gedges UNION ALL SELECT b, a FROM sp_gedges;
    v_rounds := syncpipe_internal.merge_label_components();
    PERFORM syncpipe_internal.merge_split_bridges(v_auto);
    PERFORM syncpipe_internal.merge_keep_apart(v_auto);
    -- Every pending record is in a component, maybe alone.
    CREATE UNLOGGED TABLE syncpipe_work.sp_comp AS
        SELECT v_offset + p.pid AS node, coalesce(c.label, v_offset + p.pid) AS label
        FROM sp_pend p LEFT JOIN sp_cc c ON c.node = v_offset + p.pid
        UNION ALL
        SELECT node, label FROM sp_cc WHERE node < v_offset;
    ALTER TABLE sp_comp ADD PRIMARY KEY (node);
    PERFORM syncpipe_internal.work_analyze('sp_comp');

    -- Confidence of each component: the lowest link that holds it together. A component
    -- whose links share one confidence takes it; the others are cut level by level.
    CREATE UNLOGGED TABLE syncpipe_work.sp_compconf AS
        SELECT c.label, min(e.conf) AS low, max(e.conf) AS high,
               CASE WHEN min(e.conf) = max(e.conf) THEN min(e.conf) END AS conf
        FROM sp_gedges e JOIN sp_comp c ON c.node = e.a
        GROUP BY c.label;
    -- (the nodes and links of those components, taken out once: a few hundred at 1M
    -- persons, where each level joined all the links and all the nodes again)
    CREATE UNLOGGED TABLE syncpipe_work.sp_mixnodes AS
        SELECT c.node, c.label
        FROM sp_comp c JOIN sp_compconf f ON f.label = c.label
        WHERE f.conf IS NULL;
    CREATE UNLOGGED TABLE syncpipe_work.sp_mixedges AS
        SELECT e.a, e.b, e.conf, m.label
        FROM sp_gedges e JOIN sp_mixnodes m ON m.node = e.a;
    PERFORM syncpipe_internal.work_analyze('sp_mixnodes');
    PERFORM syncpipe_internal.work_analyze('sp_mixedges');
    FOR v_level IN
        SELECT DISTINCT high FROM sp_compconf WHERE conf IS NULL ORDER BY high DESC
    LOOP
        DROP TABLE sp_cc_edges;
        CREATE UNLOGGED TABLE syncpipe_work.sp_cc_edges AS
            SELECT e.a, e.b
            FROM sp_mixedges e
            JOIN sp_compconf f ON f.label = e.label AND f.conf IS NULL
            WHERE e.conf >= v_level;
        INSERT INTO sp_cc_edges SELECT b, a FROM sp_cc_edges;
        v_rounds := v_rounds + syncpipe_internal.merge_label_components();
        UPDATE sp_compconf f SET conf = v_level
        FROM (SELECT c.label
              FROM sp_mixnodes c
              JOIN sp_compconf f2 ON f2.label = c.label AND f2.conf IS NULL
              LEFT JOIN sp_cc l ON l.node = c.node
              GROUP BY c.label
              HAVING count(DISTINCT coalesce(l.label, -c.node)) = 1) ok
        WHERE f.label = ok.label AND f.conf IS NULL;
    END LOOP;
    UPDATE sp_compconf SET conf = low WHERE conf IS NULL;
    RETURN v_rounds;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
