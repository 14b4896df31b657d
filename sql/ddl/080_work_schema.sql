-- The schema of the merge's work tables (see public.merge_work_drop in
-- sql/functions/015_helpers.sql): UNLOGGED tables that a run creates and drops inside its own
-- transaction, so PostgreSQL may scan them with parallel workers (it never scans temporary
-- tables so). Nothing in it outlives a run; privileges are granted in sql/rls.
CREATE SCHEMA IF NOT EXISTS syncpipe_work;
REVOKE ALL ON SCHEMA syncpipe_work FROM PUBLIC;
