-- The schema of syncpipe's internal functions (normalization, the merge's phases, trigger
-- functions). Supabase exposes every function in `public` as POST /rest/v1/rpc/<name> and, by
-- default privileges, grants anon and authenticated EXECUTE on each one created there; so only
-- the RPC entry points stay in public and everything else lives here, where the API roles have
-- no privilege at all: every functions file ends by revoking EXECUTE on the whole schema (a
-- new function is executable by PUBLIC, and a per-schema default privilege cannot take that
-- back), and sql/rls/030_internal_privileges.sql revokes the schema itself.
CREATE SCHEMA IF NOT EXISTS syncpipe_internal;
REVOKE ALL ON SCHEMA syncpipe_internal FROM PUBLIC;
