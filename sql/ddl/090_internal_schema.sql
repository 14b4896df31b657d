-- The schema of syncpipe's internal functions (normalization, the merge's phases, trigger
-- functions). Supabase exposes every function in `public` as POST /rest/v1/rpc/<name> and, by
-- default privileges, grants anon and authenticated EXECUTE on each one created there; so only
-- the RPC entry points stay in public and everything else lives here, where the API roles have
-- no privilege at all (sql/rls/030_internal_privileges.sql revokes what remains).
CREATE SCHEMA IF NOT EXISTS syncpipe_internal;
REVOKE ALL ON SCHEMA syncpipe_internal FROM PUBLIC;
-- New functions here are not executable by PUBLIC (PostgreSQL's default for a new function).
ALTER DEFAULT PRIVILEGES IN SCHEMA syncpipe_internal REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
