-- Source records to read again whatever their changed_xid (issue 16, item 3; sql/ddl/120):
-- their lineage was deleted, truncated or edited outside a merge ("match this record again").
-- Triggers on the lineage write the requests (sql/triggers/020_lineage.sql), without touching
-- the source rows (a lock on them, taken after the lineage's, would cross the member
-- pipeline's order: source row first, then its lineage). The merge reads the requested
-- records with the changed ones, and a complete run removes the requests below its mark: a
-- request from a transaction it could not see stays for the next run. source '*' asks for
-- every row (the lineage was truncated).
CREATE TABLE syncpipe_internal.merge_requeue (
    source       text NOT NULL,
    source_id    text NOT NULL,
    requested_by xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);

COMMENT ON TABLE syncpipe_internal.merge_requeue IS
    'Source records whose lineage was deleted or edited outside a merge: the next merge reads '
    'them again. Written by triggers on unified_agent_sources; emptied by complete merges.';
