-- Deleted or truncated source rows take their lineage with them (see
-- syncpipe_internal.forget_deleted_sources).

CREATE OR REPLACE TRIGGER new_agents_forget_deleted
    AFTER DELETE ON public.new_agents
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();

CREATE OR REPLACE TRIGGER unified_company_member_forget_deleted
    AFTER DELETE ON public.unified_company_member
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();

CREATE OR REPLACE TRIGGER new_agents_forget_truncated
    AFTER TRUNCATE ON public.new_agents
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();

CREATE OR REPLACE TRIGGER unified_company_member_forget_truncated
    AFTER TRUNCATE ON public.unified_company_member
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();

-- Lineage deleted, truncated or edited outside a merge: its records are read again by the
-- next merge (syncpipe_internal.merge_requeue).
CREATE OR REPLACE TRIGGER unified_agent_sources_forgotten
    AFTER DELETE ON public.unified_agent_sources
    REFERENCING OLD TABLE AS gone_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.lineage_forgotten();
CREATE OR REPLACE TRIGGER unified_agent_sources_truncated
    AFTER TRUNCATE ON public.unified_agent_sources
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.lineage_forgotten();
CREATE OR REPLACE TRIGGER unified_agent_sources_edited
    AFTER UPDATE ON public.unified_agent_sources
    FOR EACH ROW
    WHEN (OLD.source IS DISTINCT FROM NEW.source OR OLD.source_id IS DISTINCT FROM NEW.source_id
          OR NEW.source_version < OLD.source_version)
    EXECUTE FUNCTION syncpipe_internal.lineage_forgotten();
