-- Extensions used by normalization and matching. Supabase keeps extensions in the schema
-- `extensions`; syncpipe does the same on plain PostgreSQL so every function can name one
-- fixed search_path. Where an extension already exists (in any schema) nothing changes.
CREATE SCHEMA IF NOT EXISTS extensions;

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA extensions;
