-- Contact keys only of active agents (issue 16, item 3): the merge no longer reads the agents
-- to check that a key's agent is not retired, and triggers take the keys of an agent retired
-- or deleted outside a merge (sql/triggers/030_agent_contacts.sql). Keys left before those
-- triggers, for an agent retired or deleted by hand, go now.
DELETE FROM public.merge_agent_contacts c
WHERE NOT EXISTS (SELECT 1 FROM public.new_unified_agents a
                  WHERE a.agent_id = c.agent_id AND a.merged_into IS NULL);
