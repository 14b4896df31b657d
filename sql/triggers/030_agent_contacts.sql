-- An agent retired or deleted outside a merge loses its contact keys
-- (syncpipe_internal.agent_contacts_forget, sql/functions/045).
CREATE OR REPLACE TRIGGER new_unified_agents_retired
    AFTER UPDATE OF merged_into ON public.new_unified_agents
    FOR EACH ROW
    WHEN (OLD.merged_into IS NULL AND NEW.merged_into IS NOT NULL)
    EXECUTE FUNCTION syncpipe_internal.agent_contacts_forget();
CREATE OR REPLACE TRIGGER new_unified_agents_deleted
    AFTER DELETE ON public.new_unified_agents
    REFERENCING OLD TABLE AS gone_agents
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.agent_contacts_forget();
CREATE OR REPLACE TRIGGER new_unified_agents_truncated
    AFTER TRUNCATE ON public.new_unified_agents
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.agent_contacts_forget();
