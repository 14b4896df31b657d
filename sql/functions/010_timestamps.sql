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
CREATE OR REPLACE FUNCTION syncpipe_internal.source_row_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
        NEW.changed_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
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
