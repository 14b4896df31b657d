-- Keep updated_at (and the processing flags, and the source rows' changed_xid) current.
-- Re-applied whenever this file changes.

-- (Not fired when only members_synced changes: the member pipeline flips it for every page,
-- and comparing two team_members documents means reading both whole.)
CREATE OR REPLACE TRIGGER company_info_raw_track_changes
    BEFORE UPDATE OF team_members, team_id, website ON bronze.company_info_raw
    FOR EACH ROW
    WHEN ((OLD.team_members, OLD.team_id, OLD.website)
          IS DISTINCT FROM (NEW.team_members, NEW.team_id, NEW.website))
    EXECUTE FUNCTION syncpipe_internal.company_info_raw_track_changes();

CREATE OR REPLACE TRIGGER new_agents_set_updated_at
    BEFORE UPDATE ON public.new_agents
    FOR EACH ROW EXECUTE FUNCTION syncpipe_internal.source_row_changed();

-- An edit of what the merge matches a member by sets it back to unprocessed (fires first:
-- triggers of one event fire in name order).
CREATE OR REPLACE TRIGGER unified_company_member_matched_again
    BEFORE UPDATE ON public.unified_company_member
    FOR EACH ROW
    WHEN ((OLD.member_name, OLD.email_normalized, OLD.phone_normalized, OLD.team_id)
          IS DISTINCT FROM
          (NEW.member_name, NEW.email_normalized, NEW.phone_normalized, NEW.team_id))
    EXECUTE FUNCTION syncpipe_internal.member_matched_again();

-- Only a real edit of a member (its id too) moves updated_at; the merge's "processed" flag
-- does not, unless it is set back to false by hand (match the member again).
CREATE OR REPLACE TRIGGER unified_company_member_set_updated_at
    BEFORE UPDATE ON public.unified_company_member
    FOR EACH ROW
    WHEN ((OLD.id, OLD.member_name, OLD.email_normalized, OLD.phone_normalized, OLD.member_raw,
           OLD.team_id)
          IS DISTINCT FROM
          (NEW.id, NEW.member_name, NEW.email_normalized, NEW.phone_normalized, NEW.member_raw,
           NEW.team_id)
          OR (OLD.processed AND NOT NEW.processed))
    EXECUTE FUNCTION syncpipe_internal.source_row_changed();

-- Source rows written after the merge in its own transaction bring its mark down
-- (syncpipe_internal.source_rows_written(), sql/ddl/120).
CREATE OR REPLACE TRIGGER new_agents_written
    AFTER INSERT OR UPDATE ON public.new_agents
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.source_rows_written();
CREATE OR REPLACE TRIGGER unified_company_member_written
    AFTER INSERT OR UPDATE ON public.unified_company_member
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.source_rows_written();

CREATE OR REPLACE TRIGGER new_unified_agents_set_updated_at
    BEFORE UPDATE ON public.new_unified_agents
    FOR EACH ROW EXECUTE FUNCTION syncpipe_internal.set_updated_at();
