-- The merge's own tables: service_role only (the master table, lineage and review queue are
-- what other roles read). Re-applied whenever this file changes.

ALTER TABLE public.name_variants          ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.merge_shared_contacts  ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.merge_decisions        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.merge_dirty_agents     ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.merge_agent_contacts   ENABLE ROW LEVEL SECURITY;

REVOKE ALL ON public.name_variants,
              public.merge_shared_contacts, public.merge_decisions, public.merge_dirty_agents,
              public.merge_agent_contacts
    FROM anon, authenticated;
GRANT ALL ON public.name_variants,
             public.merge_shared_contacts, public.merge_decisions, public.merge_dirty_agents,
             public.merge_agent_contacts
    TO service_role;
-- The merge runs as the owner of its entry points (SECURITY DEFINER), so no API role needs a
-- right on the sequences beyond what inserting through the API takes, nor on the work schema:
-- a role that could create objects there could plant a function the merge would call.
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon, authenticated;
REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA public FROM service_role;
REVOKE ALL ON SCHEMA syncpipe_work FROM PUBLIC, anon, authenticated, service_role;

DROP POLICY IF EXISTS service_role_all ON public.name_variants;
CREATE POLICY service_role_all ON public.name_variants
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.merge_shared_contacts;
CREATE POLICY service_role_all ON public.merge_shared_contacts
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.merge_decisions;
CREATE POLICY service_role_all ON public.merge_decisions
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.merge_dirty_agents;
CREATE POLICY service_role_all ON public.merge_dirty_agents
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.merge_agent_contacts;
CREATE POLICY service_role_all ON public.merge_agent_contacts
    FOR ALL TO service_role USING (true) WITH CHECK (true);
