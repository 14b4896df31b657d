-- Deleted source rows take their lineage with them (see syncpipe_internal.forget_deleted_sources).

CREATE OR REPLACE TRIGGER new_agents_forget_deleted
    AFTER DELETE ON public.new_agents
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();

CREATE OR REPLACE TRIGGER unified_company_member_forget_deleted
    AFTER DELETE ON public.unified_company_member
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();

-- Lineage deleted while its source row stays: the row is read again by the next merge.
CREATE OR REPLACE TRIGGER unified_agent_sources_forgotten
    AFTER DELETE ON public.unified_agent_sources
    REFERENCING OLD TABLE AS gone_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.lineage_forgotten();
