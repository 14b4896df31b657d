-- Row level security, Supabase style: service_role may do everything, authenticated users may
-- read the master table, its lineage and the review queue, anon sees nothing. Privileges say
-- the same thing as the policies, so a missing policy or a stray grant alone opens nothing.
-- Re-applied whenever this file changes: every statement here can run again.

ALTER TABLE bronze.company_info_raw        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.new_agents              ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.unified_company_member  ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.new_unified_agents      ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.unified_agent_sources   ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.merge_review_queue      ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.unified_merge_logs      ENABLE ROW LEVEL SECURITY;

-- Privileges -------------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA bronze FROM anon, authenticated;
REVOKE ALL ON SCHEMA bronze FROM anon, authenticated;
GRANT USAGE ON SCHEMA bronze TO service_role;
GRANT ALL ON ALL TABLES IN SCHEMA bronze TO service_role;

REVOKE ALL ON public.new_agents, public.unified_company_member, public.new_unified_agents,
              public.unified_agent_sources, public.merge_review_queue, public.unified_merge_logs
    FROM anon, authenticated;
GRANT SELECT ON public.new_unified_agents, public.unified_agent_sources, public.merge_review_queue
    TO authenticated;
GRANT ALL ON public.new_agents, public.unified_company_member, public.new_unified_agents,
             public.unified_agent_sources, public.merge_review_queue, public.unified_merge_logs
    TO service_role;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO service_role;

-- Policies ---------------------------------------------------------------------------------
DROP POLICY IF EXISTS service_role_all ON bronze.company_info_raw;
CREATE POLICY service_role_all ON bronze.company_info_raw
    FOR ALL TO service_role USING (true) WITH CHECK (true);

DROP POLICY IF EXISTS service_role_all ON public.new_agents;
CREATE POLICY service_role_all ON public.new_agents
    FOR ALL TO service_role USING (true) WITH CHECK (true);

DROP POLICY IF EXISTS service_role_all ON public.unified_company_member;
CREATE POLICY service_role_all ON public.unified_company_member
    FOR ALL TO service_role USING (true) WITH CHECK (true);

DROP POLICY IF EXISTS service_role_all ON public.new_unified_agents;
CREATE POLICY service_role_all ON public.new_unified_agents
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS authenticated_read ON public.new_unified_agents;
CREATE POLICY authenticated_read ON public.new_unified_agents
    FOR SELECT TO authenticated USING (true);

DROP POLICY IF EXISTS service_role_all ON public.unified_agent_sources;
CREATE POLICY service_role_all ON public.unified_agent_sources
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS authenticated_read ON public.unified_agent_sources;
CREATE POLICY authenticated_read ON public.unified_agent_sources
    FOR SELECT TO authenticated USING (true);

DROP POLICY IF EXISTS service_role_all ON public.merge_review_queue;
CREATE POLICY service_role_all ON public.merge_review_queue
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS authenticated_read ON public.merge_review_queue;
CREATE POLICY authenticated_read ON public.merge_review_queue
    FOR SELECT TO authenticated USING (true);

DROP POLICY IF EXISTS service_role_all ON public.unified_merge_logs;
CREATE POLICY service_role_all ON public.unified_merge_logs
    FOR ALL TO service_role USING (true) WITH CHECK (true);
