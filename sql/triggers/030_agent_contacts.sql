-- Contact keys follow agents edited outside a merge: an agent inserted, retired, brought
-- back, given other e-mails or phones or another id, deleted
-- (syncpipe_internal.agent_contacts_follow and agent_contacts_forget, sql/functions/045). A
-- merge keeps them in step itself (merge_contacts_sync) and sets syncpipe.merging for its
-- duration: its own writes of up to millions of agents do not fire the row triggers.
DROP TRIGGER IF EXISTS new_unified_agents_retired ON public.new_unified_agents;
CREATE OR REPLACE TRIGGER new_unified_agents_contacts_edited
    AFTER UPDATE OF agent_id, merged_into, emails, phone_numbers ON public.new_unified_agents
    FOR EACH ROW
    WHEN ((OLD.agent_id IS DISTINCT FROM NEW.agent_id
           OR OLD.merged_into IS DISTINCT FROM NEW.merged_into
           OR OLD.emails IS DISTINCT FROM NEW.emails
           OR OLD.phone_numbers IS DISTINCT FROM NEW.phone_numbers)
          AND current_setting('syncpipe.merging', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION syncpipe_internal.agent_contacts_follow();
CREATE OR REPLACE TRIGGER new_unified_agents_contacts_inserted
    AFTER INSERT ON public.new_unified_agents
    FOR EACH ROW
    -- (one test per row of a merge's insert of up to millions of agents: 0.2 s in 1.3M)
    WHEN (current_setting('syncpipe.merging', true) IS DISTINCT FROM 'on'
          AND NEW.merged_into IS NULL
          AND (NEW.emails <> '{}' OR NEW.phone_numbers <> '{}'))
    EXECUTE FUNCTION syncpipe_internal.agent_contacts_follow();
CREATE OR REPLACE TRIGGER new_unified_agents_deleted
    AFTER DELETE ON public.new_unified_agents
    REFERENCING OLD TABLE AS gone_agents
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.agent_contacts_forget();
CREATE OR REPLACE TRIGGER new_unified_agents_truncated
    AFTER TRUNCATE ON public.new_unified_agents
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.agent_contacts_forget();

-- A merged_into set by hand must lead to an active agent, not round a cycle
-- (syncpipe_internal.agent_merged_into_checked, sql/functions/045; a merge only points
-- agents at survivors).
CREATE OR REPLACE TRIGGER new_unified_agents_merged_into_checked
    AFTER INSERT OR UPDATE OF merged_into ON public.new_unified_agents
    FOR EACH ROW
    WHEN (NEW.merged_into IS NOT NULL
          AND current_setting('syncpipe.merging', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION syncpipe_internal.agent_merged_into_checked();
