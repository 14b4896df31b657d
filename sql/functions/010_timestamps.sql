-- Trigger functions that keep timestamps and "needs processing" flags true to the data.

-- updated_at moves only when a row really changes, so reloading the same file touches nothing
-- (and a changed feed row, newer than its lineage, is matched again by the next merge).
CREATE OR REPLACE FUNCTION syncpipe_internal.set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

-- A source row (new_agents, unified_company_member) that really changed: its updated_at, and
-- the transaction that changed it, from which the next merge finds it (sql/ddl/120).
-- (clock_timestamp(), not now(): a transaction that began before another one changed the row
-- and changes it after must still leave a later version than the one a merge matched.)
CREATE OR REPLACE FUNCTION syncpipe_internal.source_row_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := clock_timestamp();
        NEW.changed_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
END;
$$;

-- A member edited in what the merge matches it by (its name, e-mails, phones or team, by hand
-- or through the API) is matched again by the next merge, as an edited feed row is: it is set
-- back to unprocessed. (The merge found members by that flag or a missing lineage only, and
-- kept an edited member where it was, with its agent's old contacts.) For the trigger of
-- sql/triggers/010_timestamps.sql that fires on such an edit, before the one that keeps
-- updated_at (source_row_changed()).
CREATE OR REPLACE FUNCTION syncpipe_internal.member_matched_again()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    NEW.processed := false;
    -- A name written without its normalized forms (which the member pipeline writes with
    -- it): they are the old name's; without them the merge normalizes the name itself
    -- (merge_normalize()). It matched the renamed member by its old name.
    IF NEW.member_name IS DISTINCT FROM OLD.member_name
       AND NEW.name_normalized IS NOT DISTINCT FROM OLD.name_normalized THEN
        NEW.name_normalized := NULL;
        NEW.name_key := NULL;
        NEW.name_first := NULL;
        NEW.name_last := NULL;
        NEW.name_middle := NULL;
        NEW.name_suffix := NULL;
    END IF;
    RETURN NEW;
END;
$$;

-- After any write of source rows: a stored mark above the writer's own transaction id can
-- only be the mark of this very transaction (a mark stops at every transaction its merge
-- could not see): a pipeline step (SYNCPIPE_PIPELINE_STEPS) writing source rows after the
-- merge, in its transaction. The mark comes down to this transaction, so the next merge reads
-- those rows. (Runs as its owner: API roles write source rows without any right on the mark.)
CREATE OR REPLACE FUNCTION syncpipe_internal.source_rows_written()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    UPDATE syncpipe_internal.merge_mark SET pending_from = pg_current_xact_id()
    WHERE pending_from > pg_current_xact_id();
    IF FOUND THEN
        PERFORM syncpipe_internal.merge_mark_seal();
    END IF;
    RETURN NULL;
END;
$$;

-- A team page whose members changed must be exploded again by the member pipeline.
CREATE OR REPLACE FUNCTION syncpipe_internal.company_info_raw_track_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF (NEW.team_members, NEW.team_id, NEW.website)
       IS DISTINCT FROM (OLD.team_members, OLD.team_id, OLD.website) THEN
        NEW.updated_at := now();
        IF (NEW.team_members, NEW.team_id) IS DISTINCT FROM (OLD.team_members, OLD.team_id) THEN
            NEW.members_synced := false;
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
