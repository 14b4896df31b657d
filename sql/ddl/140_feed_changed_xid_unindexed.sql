-- The feed's changed_xid without an index (issue 16, item 3; sql/ddl/120).
--
-- The feed is what `syncpipe load` COPYs, a million rows at a time: maintaining a B-tree on
-- changed_xid made that load about 30% slower (bench/RESULTS.md, "Incremental runs"), where
-- reading the feed's changed rows without it costs the merge one parallel scan of the table
-- (0.1 s warm, 0.4 s cold at 1.19M rows). The members keep theirs: the member pipeline
-- writes them in bulk and rebuilds its indexes after.
DROP INDEX public.new_agents_changed_xid_idx;
