-- The merge's first phases (merge_plan(), sql/functions/040_merge.sql): the records to match,
-- their normalized contacts and names, and who else holds their keys and names.
-- Graph nodes: an existing agent is its agent_id; a pending record is node_offset + pid.

-- The cluster's system identifier: transaction ids count per cluster, so a stored mark is
-- only good on the cluster it was taken on (sql/ddl/120). NULL where the server hides it:
-- then only the mark row's xmin tells a restored copy (sql/ddl/130).
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_system_identifier()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    RETURN (SELECT system_identifier FROM pg_control_system());
EXCEPTION WHEN insufficient_privilege THEN
    RETURN NULL;
END;
$$;

-- The mark of a snapshot: the lowest transaction id whose rows it might not see. Ids below
-- xmax are visible except those still running (xip); this transaction's own id is visible to
-- it, though it may equal xmax (when no transaction ended after it began); ids from xmax on
-- are not (they began later, or are running). Every row changed by a transaction below the
-- mark is visible to every later statement of the transaction that took the snapshot.
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_snapshot_mark(p_snapshot pg_snapshot,
                                                                 p_own xid8)
RETURNS xid8
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
    SELECT least(
        (SELECT min(x) FROM pg_snapshot_xip(p_snapshot) x WHERE x IS DISTINCT FROM p_own),
        CASE WHEN p_own = pg_snapshot_xmax(p_snapshot)
             THEN (p_own::text::numeric + 1)::text::xid8
             ELSE pg_snapshot_xmax(p_snapshot) END);
$$;

-- After a complete run (every pending record taken): the mark the next run starts from.
--   reads:   sp_meta (next_mark, system_identifier, snapshot)
--   writes:  syncpipe_internal.merge_mark; syncpipe_internal.merge_requeue (requests read)
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_store_mark(p_log_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    INSERT INTO syncpipe_internal.merge_mark (system_identifier, pending_from, log_id)
    SELECT system_identifier, next_mark, p_log_id
    FROM sp_meta
    WHERE next_mark IS NOT NULL
    ON CONFLICT (only_row) DO UPDATE
    SET system_identifier = EXCLUDED.system_identifier, pending_from = EXCLUDED.pending_from,
        log_id = EXCLUDED.log_id, stored_at = now();
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- (the row's xmin, read back: a copy of the row has another one; sql/ddl/130)
    PERFORM syncpipe_internal.merge_mark_seal();
    -- Requests this run read: those its snapshot saw (a request of a transaction it could
    -- not see waits for the next run: sql/ddl/150).
    DELETE FROM syncpipe_internal.merge_requeue q USING sp_meta m
    WHERE q.requested_by < m.next_mark OR pg_visible_in_snapshot(q.requested_by, m.snapshot);
    RETURN true;
END;
$$;

-- Record the mark row's xmin in the row (an update in the same transaction keeps it).
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_mark_seal()
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
    UPDATE syncpipe_internal.merge_mark SET stored_xmin = xmin::text::bigint;
$$;

-- Phase "pending": the run's constants and the records it matches.
--   reads:   public.new_agents, public.unified_company_member, public.unified_agent_sources,
--            public.new_unified_agents (the node offset), public.name_variants,
--            syncpipe_internal.merge_mark (where the last complete run left off),
--            syncpipe_internal.merge_requeue (records asked for again); a dry run's
--            sp_members (the member pipeline's members it did not insert)
--   writes:  sp_meta(node_offset, system_identifier, pending_from, next_mark, snapshot),
--            sp_changed_feed, sp_changed_members (the source rows changed since the mark,
--            when one is stored), sp_canon(variant, canons),
--            sp_pend(pid, source, source_id, team_id, full_name, version, email_json,
--                    phone_json, emails, phones, old_agent, name_norm, name_key, first_name,
--                    last_name, middle, suffix, unprocessed, sort_key) (unprocessed: a member
--                    whose processed flag is false)
--   options: limit (pending records taken by this batch), dry_run, rescan (look at every
--            source row, not only those changed since the stored mark)
--   returns: the number of pending records
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_pending(p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_dry     boolean := coalesce((p_options ->> 'dry_run')::boolean, false);
    v_limit   bigint := (p_options ->> 'limit')::bigint;
    v_offset  bigint;
    v_sysid   bigint := syncpipe_internal.merge_system_identifier();
    -- (taken before the pending records are read: a mark of an earlier snapshot is the safe
    -- side; see sql/ddl/120)
    v_snap    pg_snapshot := pg_current_snapshot();
    v_mark    xid8 := syncpipe_internal.merge_snapshot_mark(v_snap,
                                                             pg_current_xact_id_if_assigned());
    v_from    xid8;
    v_rows    bigint;
    v_feed    bigint;
    v_members bigint;
    v_seqscan text := current_setting('enable_seqscan');
    v_rescan  boolean := coalesce((p_options ->> 'rescan')::boolean, false);
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_meta', 'sp_canon', 'sp_pend',
                                                    'sp_changed_feed', 'sp_changed_members']);
    SELECT coalesce(max(agent_id), 0) + 1 INTO v_offset FROM public.new_unified_agents;
    -- Rows changed before the last complete run's mark are matched already: only those
    -- changed since are read (none stored, another cluster's, or rescan: every row).
    IF NOT v_rescan THEN
        SELECT pending_from INTO v_from
        FROM syncpipe_internal.merge_mark
        WHERE system_identifier IS NOT DISTINCT FROM v_sysid
          AND stored_xmin = xmin::text::bigint  -- not a restored copy (sql/ddl/130)
          AND pending_from <= v_mark;
        IF EXISTS (SELECT 1 FROM syncpipe_internal.merge_requeue WHERE source = '*') THEN
            v_from := NULL;  -- (the lineage was truncated: every row)
        END IF;
    END IF;
    IF v_from IS NOT NULL THEN
        -- The rows changed since, copied and counted before they are joined with the lineage:
        -- the feed's in one scan (it has no index on changed_xid: sql/ddl/140), the members'
        -- by index whatever the statistics say (they may predate the pipeline's insert, or not
        -- know the column: then a sequential scan looks as cheap).
        -- With them, the records whose lineage was deleted or edited outside a merge
        -- (syncpipe_internal.merge_requeue, sql/ddl/150).
        CREATE UNLOGGED TABLE syncpipe_work.sp_changed_feed AS
            SELECT supabase_uuid, team_id, full_name, updated_at, email_clean, phone_digits
            FROM public.new_agents
            WHERE changed_xid >= v_from
               OR supabase_uuid IN (
                      SELECT CASE WHEN source_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                  THEN source_id::uuid END
                      FROM syncpipe_internal.merge_requeue WHERE source = 'new_agents');
        GET DIAGNOSTICS v_feed = ROW_COUNT;
        PERFORM set_config('enable_seqscan', 'off', true);
        CREATE UNLOGGED TABLE syncpipe_work.sp_changed_members AS
            SELECT id, team_id, member_name, updated_at, email_normalized, phone_normalized,
                   name_normalized, name_key, name_first, name_last, name_middle, name_suffix,
                   record_hash, processed
            FROM public.unified_company_member WHERE changed_xid >= v_from
            UNION
            SELECT m.id, m.team_id, m.member_name, m.updated_at, m.email_normalized,
                   m.phone_normalized, m.name_normalized, m.name_key, m.name_first,
                   m.name_last, m.name_middle, m.name_suffix, m.record_hash, m.processed
            FROM syncpipe_internal.merge_requeue r
            JOIN public.unified_company_member m
              ON m.id = CASE WHEN r.source_id ~ '^[0-9]{1,18}$' THEN r.source_id::bigint END
            WHERE r.source = 'company_member';
        GET DIAGNOSTICS v_members = ROW_COUNT;
        PERFORM set_config('enable_seqscan', v_seqscan, true);
        PERFORM syncpipe_internal.work_analyze('sp_changed_feed');
        PERFORM syncpipe_internal.work_analyze('sp_changed_members');
    END IF;
    -- Canonical given names of each known variant (Bob -> robert), for name comparisons.
    CREATE UNLOGGED TABLE syncpipe_work.sp_canon AS
        SELECT variant, array_agg(canonical ORDER BY canonical) AS canons
        FROM public.name_variants GROUP BY variant;
    ALTER TABLE sp_canon ADD PRIMARY KEY (variant);

    -- Pending records: feed rows newer than their lineage (or never matched), and members
    -- not processed or without lineage (the member pipeline writes them "processed" when
    -- this merge follows it in the same transaction).
    EXECUTE format($q$
    CREATE UNLOGGED TABLE syncpipe_work.sp_pend AS
    -- (numbered in the order of their keys, not in the order a parallel scan delivers them:
    -- ties further on are broken by these numbers, so the same data gives the same answer
    -- every time; and a batched run, limit, cuts the same batches)
    -- (one byte-ordered key: the feed first, then members, each in the order of its keys; a
    -- first key of two values in the database's collation made the sort compare strings
    -- with strcoll(), over twice as slow at 1M persons)
    SELECT row_number() OVER (ORDER BY x.sort_key) AS pid, x.*
    FROM (
        SELECT 'new_agents'::text AS source, a.supabase_uuid::text AS source_id,
               nullif(btrim(a.team_id), '') AS team_id, a.full_name, a.updated_at AS version,
               a.email_clean AS email_json, a.phone_digits AS phone_json,
               NULL::text[] AS emails, NULL::text[] AS phones, l.agent_id AS old_agent,
               NULL::text AS name_norm, NULL::text AS name_key, NULL::text AS first_name,
               NULL::text AS last_name, NULL::text AS middle, NULL::text AS suffix,
               false AS unprocessed,
               ('0' || a.supabase_uuid::text) COLLATE "C" AS sort_key
        FROM %1$s a
        LEFT JOIN public.unified_agent_sources l
               ON l.source = 'new_agents' AND l.source_id = a.supabase_uuid::text
        WHERE (l.source_id IS NULL OR l.source_version < a.updated_at %5$s) %3$s
        UNION ALL
        SELECT 'company_member', m.id::text, m.team_id, m.member_name, m.updated_at,
               NULL, NULL, m.email_normalized, m.phone_normalized, l.agent_id,
               m.name_normalized, m.name_key, m.name_first, m.name_last, m.name_middle,
               m.name_suffix, NOT m.processed,
               -- (a member's id depends on the order its page was read in; its hash does not)
               '1' || m.record_hash
        FROM %2$s m
        LEFT JOIN public.unified_agent_sources l
               ON l.source = 'company_member' AND l.source_id = m.id::text
        WHERE (NOT m.processed OR l.source_id IS NULL %6$s) %4$s
    ) x
    ORDER BY x.sort_key
    LIMIT $1  -- merge_batch_records: the rest waits for the next batch
    $q$,
    CASE WHEN v_from IS NULL THEN 'public.new_agents' ELSE 'sp_changed_feed' END,
    CASE WHEN v_from IS NULL THEN 'public.unified_company_member' ELSE 'sp_changed_members' END,
    -- (no row changed: the branch is left out, not planned for the ten pages PostgreSQL
    -- assumes of an empty table)
    CASE WHEN v_feed = 0 THEN 'AND false' ELSE '' END,
    CASE WHEN v_members = 0 THEN 'AND false' ELSE '' END,
    -- rescan: also a row rewritten after its lineage was (a later transaction wrote it:
    -- its age is smaller), whatever its updated_at says: rows written with the triggers
    -- disabled, or copied back from a backup (a VACUUM FREEZE since hides such a row: its
    -- xmin then reads as frozen, the oldest)
    CASE WHEN v_rescan THEN 'OR age(a.xmin) < age(l.xmin)' ELSE '' END,
    CASE WHEN v_rescan THEN 'OR age(m.xmin) < age(l.xmin)' ELSE '' END)
    USING v_limit;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    -- The next run starts from this run's mark when this run takes every pending record
    -- (a batch that leaves some keeps the stored mark) and writes (not a dry run).
    CREATE UNLOGGED TABLE syncpipe_work.sp_meta AS
        SELECT v_offset AS node_offset, v_sysid AS system_identifier, v_from AS pending_from,
               CASE WHEN NOT v_dry AND (v_limit IS NULL OR v_rows < v_limit) THEN v_mark END
                   AS next_mark,
               v_snap AS snapshot;
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
    -- (no key: every reader joins or scans it whole; the review queue finds its few records
    -- in sp_place)
    -- (the columns later statements join, filter or group on: a wide table's other
    -- columns, names and contact arrays, cost most of its ANALYZE and steer no plan)
    PERFORM syncpipe_internal.work_analyze('sp_pend', ARRAY['pid', 'source', 'source_id',
                                                            'team_id', 'old_agent',
                                                            'unprocessed']);
    RETURN (SELECT count(*) FROM sp_pend);
END;
$$;

-- Phase "normalize": the pending records' contact keys and names, normalized.
--   reads:   sp_pend
--   writes:  sp_pkeys(pid, kind, value) (kind 'e' e-mail, 'p' phone),
--            sp_person_names(uid = pid, name_norm, name_key, first_name, last_name, middle,
--                            suffix); sp_contacts_in and sp_names_in on the way
--            (normalize_contacts(), normalize_person_names(): sql/functions/020_normalize.sql)
--   options: none
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_normalize()
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_contacts_in', 'sp_names_in', 'sp_pkeys']);
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
    PERFORM syncpipe_internal.work_analyze('sp_pkeys');
    -- Feed names are normalized here; members' by the member pipeline, except a name
    -- written by hand, whose normalized forms its trigger took off (member_matched_again()).
    -- (a member whose name normalizes to nothing is normalized again: the same nothing)
    CREATE UNLOGGED TABLE syncpipe_work.sp_names_in AS
        SELECT pid AS uid, full_name AS raw FROM sp_pend
        WHERE source = 'new_agents' OR (name_norm IS NULL AND full_name IS NOT NULL);
    PERFORM syncpipe_internal.normalize_person_names();
    INSERT INTO sp_person_names
        SELECT pid, name_norm, name_key, first_name, last_name, middle, suffix
        FROM sp_pend
        WHERE source = 'company_member' AND NOT (name_norm IS NULL AND full_name IS NOT NULL);
    PERFORM syncpipe_internal.work_analyze('sp_person_names', ARRAY['uid']);
END;
$$;

-- Phase "candidates": who else holds the pending records' keys, and the names to compare.
--   reads:   sp_meta, sp_pend, sp_pkeys, sp_person_names; public.merge_agent_contacts,
--            public.new_unified_agents, public.unified_agent_sources (the known agents)
--   writes:  sp_keyknown(kind, value, node): known agents holding a pending key;
--            sp_keydups(h): hashes of keys held more than once, seeded by their kind (on
--                           the way);
--            sp_keyrecs(kind, value, node): every holder of a key held by two or more nodes;
--            sp_names(node, team_id, name_norm, name_key, first_name, last_name, middle,
--                     suffix, pending): the pending records' names, and the lineage of known
--            agents in their teams or holding their keys
--   options: none
CREATE OR REPLACE FUNCTION syncpipe_internal.merge_candidates()
RETURNS void
LANGUAGE plpgsql
-- JIT compiling these one-off statements costs seconds and saves nothing.
SET jit = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_offset  bigint := (SELECT node_offset FROM sp_meta);
    v_known   boolean := EXISTS (SELECT 1 FROM public.unified_agent_sources);
    v_workers text := current_setting('max_parallel_workers_per_gather');
    v_hashagg text := current_setting('enable_hashagg');
    v_probe   boolean;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_keyknown', 'sp_keydups', 'sp_keyrecs',
        'sp_names']);
    -- Who holds each pending key: pending records, and known agents (the master table's
    -- contact keys). Only keys held by more than one node can link anything; they are
    -- counted by a 64-bit hash of the value, seeded by the kind (one integer groups several
    -- times faster than text; a collision only keeps a key that then links nothing).
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyknown (kind "char", value text COLLATE "C",
                                                     node bigint);
    -- (few keys next to the key table: a probe of its index per value, where the planner,
    -- misjudging the join, would rather read the whole table; many, as in a batch a third
    -- the size of the database: that read and a hash join, where 862k probes took 8.7 s at
    -- 1M persons; table_rows() errs high, towards the probes. The same for the known
    -- agents' lineage below.)
    v_probe := (SELECT count(*) FROM sp_pkeys) * 32
               < syncpipe_internal.table_rows('public.merge_agent_contacts');
    -- (the keys are active agents' only: the merge removes a retired agent's, and a trigger
    -- those of an agent retired or deleted by hand, sql/triggers/030; no read of the agents
    -- to check, which was 16,581 of the 42,089 pages this statement read in a 1% increment)
    -- (probed in the index's order, value first: consecutive probes share its pages; in
    -- the order a hash delivers them, 28,680 probes took 185-290 ms against 150-160 ms)
    IF v_known AND v_probe THEN
        INSERT INTO sp_keyknown
        SELECT d.kind, d.value, k.agent_id
        FROM (SELECT DISTINCT value, kind FROM sp_pkeys ORDER BY value, kind) d
        CROSS JOIN LATERAL (SELECT c.agent_id FROM public.merge_agent_contacts c
                            WHERE c.kind = d.kind AND c.value = d.value OFFSET 0) k;
    ELSIF v_known THEN
        INSERT INTO sp_keyknown
        SELECT c.kind, c.value, c.agent_id
        FROM public.merge_agent_contacts c
        JOIN (SELECT DISTINCT kind, value FROM sp_pkeys) d
          ON d.kind = c.kind AND d.value = c.value;
    END IF;
    -- (the hashes held more than once in a table of their own: counted, the join below
    -- reads the keys in parallel instead of probing an estimate a hundred times too small)
    -- (counted by one process: nearly every hash is distinct, so parallel workers' partial
    -- counts reduce nothing and are hashed a second time, 0.7 s slower at 1M persons)
    -- (one integer, sorted: a hash table of 3M distinct hashes outgrew memory and spilled,
    -- and with the kind as a first sort key every comparison went through "char"'s
    -- comparison function; 4.9-5.5 s -> 2.8-3.6 s at 1M persons)
    PERFORM set_config('max_parallel_workers_per_gather', '0', true);
    PERFORM set_config('enable_hashagg', 'off', true);
    CREATE UNLOGGED TABLE syncpipe_work.sp_keydups AS
        SELECT h
        FROM (SELECT hashtextextended(value, ascii(kind)) AS h FROM sp_pkeys
              UNION ALL
              SELECT hashtextextended(value, ascii(kind)) FROM sp_keyknown) a
        GROUP BY h HAVING count(*) > 1;
    PERFORM set_config('max_parallel_workers_per_gather', v_workers, true);
    PERFORM set_config('enable_hashagg', v_hashagg, true);
    PERFORM syncpipe_internal.work_analyze('sp_keydups');
    CREATE UNLOGGED TABLE syncpipe_work.sp_keyrecs AS
        SELECT k.kind, k.value, k.node
        FROM (SELECT kind, value, v_offset + pid AS node FROM sp_pkeys
              UNION ALL
              SELECT kind, value, node FROM sp_keyknown) k
        WHERE hashtextextended(k.value, ascii(k.kind)) IN (SELECT h FROM sp_keydups);
    PERFORM syncpipe_internal.work_analyze('sp_keyrecs');

    -- Names: pending records, and the lineage of known agents in the same teams or holding
    -- the same keys (a changed record's old lineage row excluded).
    -- (names and teams in byte order, COLLATE "C", as in the lineage: the phases after this
    -- sort and group by them, and in the database's collation every comparison of two
    -- strings went through strcoll())
    CREATE UNLOGGED TABLE syncpipe_work.sp_names AS
        SELECT v_offset + p.pid AS node, p.team_id COLLATE "C" AS team_id,
               n.name_norm COLLATE "C" AS name_norm, n.name_key COLLATE "C" AS name_key,
               n.first_name COLLATE "C" AS first_name, n.last_name COLLATE "C" AS last_name,
               n.middle COLLATE "C" AS middle, n.suffix COLLATE "C" AS suffix, true AS pending
        FROM sp_pend p JOIN sp_person_names n ON n.uid = p.pid;
    IF v_known THEN
        EXECUTE format($q$
        INSERT INTO sp_names
        SELECT s.agent_id, s.team_id, s.name_norm, s.name_key, s.first_name, s.last_name,
               s.middle, s.suffix, false
        FROM (
            -- Each condition apart (an OR of the two reads the whole lineage, where the
            -- teams' index serves the first); the second leaves out what the first found.
            -- (its probes by agent in the index's order, as the contact keys' above)
            SELECT * FROM public.unified_agent_sources
            WHERE team_id IN (SELECT team_id COLLATE "C" FROM sp_pend)
            UNION ALL
            SELECT l.*
            FROM (SELECT DISTINCT node FROM sp_keyrecs WHERE node < $1 %s) k
            %s
            WHERE (l.team_id IS NULL
                   OR l.team_id NOT IN (SELECT team_id COLLATE "C" FROM sp_pend
                                        WHERE team_id IS NOT NULL))
        ) s
        WHERE NOT EXISTS (SELECT 1 FROM sp_pend p
                          WHERE p.source = s.source AND p.source_id = s.source_id)
        $q$, CASE WHEN v_probe THEN 'ORDER BY node' ELSE '' END,
             CASE WHEN v_probe
                  THEN 'CROSS JOIN LATERAL (SELECT * FROM public.unified_agent_sources
                                            WHERE agent_id = k.node OFFSET 0) l'
                  ELSE 'JOIN public.unified_agent_sources l ON l.agent_id = k.node' END)
        USING v_offset;
    END IF;
    CREATE INDEX ON sp_names (node);
    PERFORM syncpipe_internal.work_analyze('sp_names');
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
