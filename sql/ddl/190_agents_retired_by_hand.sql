-- Agents retired outside a merge (merged_into set by hand, through the API), waiting for the
-- merge to retire them as it retires agents itself: their records (lineage) and open review
-- items follow them to their survivor, whose golden record takes them. Until then a new
-- record could join the retired agent through its records' names, and a rejected pair could
-- come back through it. Written by the trigger that follows agents edited by hand
-- (syncpipe_internal.agent_contacts_follow); emptied by merge_retire_agents().
CREATE TABLE syncpipe_internal.merge_retired_by_hand (
    agent_id bigint PRIMARY KEY
);

COMMENT ON TABLE syncpipe_internal.merge_retired_by_hand IS
    'Agents retired by hand whose records and review items the next merge (or a review '
    'decision meeting them) moves to their survivor.';

-- Agents retired by hand before this file: those still holding records.
INSERT INTO syncpipe_internal.merge_retired_by_hand (agent_id)
SELECT a.agent_id
FROM public.new_unified_agents a
WHERE a.merged_into IS NOT NULL
  AND EXISTS (SELECT 1 FROM public.unified_agent_sources s WHERE s.agent_id = a.agent_id);
