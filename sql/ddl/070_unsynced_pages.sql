-- The team pages whose members changed since the member pipeline last read them, by index:
-- a run with nothing new (or a few new pages) then reads a handful of index entries instead
-- of every page of bronze.company_info_raw. The index holds only unsynced pages, so it stays
-- small; the pipeline's UPDATE ... SET members_synced = true takes pages out of it.
CREATE INDEX company_info_raw_unsynced_idx ON bronze.company_info_raw (research_uuid)
    WHERE NOT members_synced;
