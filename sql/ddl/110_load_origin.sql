-- Which loaded file a source row came from (syncpipe.load_files.id), so a key that a different
-- file loaded already is refused by the next file, even after the merge has rewritten the row.
-- The load sets syncpipe.load_file_id for its batch's transaction only; every other writer
-- (the API, a hand edit) leaves the column NULL. A column default costs the COPY one setting
-- lookup per row and no index.
ALTER TABLE bronze.company_info_raw
    ADD COLUMN load_file_id bigint
        DEFAULT nullif(pg_catalog.current_setting('syncpipe.load_file_id', true), '')::bigint;
ALTER TABLE public.new_agents
    ADD COLUMN load_file_id bigint
        DEFAULT nullif(pg_catalog.current_setting('syncpipe.load_file_id', true), '')::bigint;

COMMENT ON COLUMN bronze.company_info_raw.load_file_id IS
    'syncpipe.load_files.id of the file that last wrote this row (NULL: not written by a load).';
COMMENT ON COLUMN public.new_agents.load_file_id IS
    'syncpipe.load_files.id of the file that last wrote this row (NULL: not written by a load).';
