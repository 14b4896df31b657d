-- Where the next merge starts looking for pending records (issue 16, item 3).
--
-- Every source row carries the id of the transaction that last changed it (changed_xid:
-- pg_current_xact_id(), 64 bits with the epoch, so it never wraps; set on insert by the
-- default and on a real change by the tables' update triggers). A merge that took every
-- pending record stores a mark: the lowest transaction id its snapshot could not see, its own
-- left out (syncpipe_internal.merge_snapshot_mark()). Every row changed by a transaction
-- below the mark was visible to that merge and is matched already, so the next merge reads
-- only rows changed at or after it (a range of the index below) instead of joining every
-- source row with the lineage. A load that commits while a merge runs has a transaction id
-- at or above that merge's mark: its rows wait for the next merge, as before.
--
-- Transaction ids count per cluster: the mark is kept with the cluster's system identifier,
-- and a mark from another cluster (a dump restored elsewhere, an upgrade) or none at all
-- makes the merge look at every row, as it always did, and then store a mark of its own.
ALTER TABLE public.new_agents
    ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id();
ALTER TABLE public.unified_company_member
    ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id();

COMMENT ON COLUMN public.new_agents.changed_xid IS
    'Id of the transaction that last changed this row (pg_current_xact_id()): the merge reads '
    'only rows changed since its last complete run.';
COMMENT ON COLUMN public.unified_company_member.changed_xid IS
    'Id of the transaction that last changed this row (pg_current_xact_id()): the merge reads '
    'only rows changed since its last complete run.';

-- (A B-tree, not BRIN: the rows of a big load are in no summarized range until a vacuum runs,
-- so BRIN would read the whole table on the next merge; and a B-tree tells the planner how
-- many rows changed when the statistics predate the load. Rows come in rising transaction
-- order, so a COPY appends to its rightmost page.)
CREATE INDEX new_agents_changed_xid_idx ON public.new_agents (changed_xid);
CREATE INDEX unified_company_member_changed_xid_idx
    ON public.unified_company_member (changed_xid);

CREATE TABLE syncpipe_internal.merge_mark (
    only_row          boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    -- pg_control_system().system_identifier of the cluster the mark was taken on
    system_identifier bigint NOT NULL,
    -- rows with changed_xid below this were matched by the merge that stored it
    pending_from      xid8 NOT NULL,
    log_id            bigint,
    stored_at         timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE syncpipe_internal.merge_mark IS
    'The last complete merge''s mark: source rows changed by transactions below pending_from '
    'are matched already. Delete the row to make the next merge look at every source row.';
