-- Deleted source rows take their lineage with them (see syncpipe_internal.forget_deleted_sources).

CREATE OR REPLACE TRIGGER new_agents_forget_deleted
    AFTER DELETE ON public.new_agents
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();

CREATE OR REPLACE TRIGGER unified_company_member_forget_deleted
    AFTER DELETE ON public.unified_company_member
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION syncpipe_internal.forget_deleted_sources();
