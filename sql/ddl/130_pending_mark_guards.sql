-- The mark of sql/ddl/120, kept honest against copies (issue 16, item 3).
--
-- stored_xmin: the mark row's own xmin when the merge stored it. A row restored from a dump
-- (pg_dump/pg_restore, a copy of the table) is written by another transaction, so its xmin
-- no longer matches and the mark is not trusted: the merge reads every source row once. That
-- holds whatever the cluster (a clone of the same cluster shares its system identifier but
-- not its later transaction ids). A physical copy keeps both the xmin and the history the
-- transaction ids count, so its mark stays good.
ALTER TABLE syncpipe_internal.merge_mark ADD COLUMN stored_xmin bigint;
-- (NULL where the server hides pg_control_system(): the xmin check alone then)
ALTER TABLE syncpipe_internal.merge_mark ALTER COLUMN system_identifier DROP NOT NULL;
