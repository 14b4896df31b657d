-- Raw research pages: one row per company/team page, members kept as the JSON array found.
CREATE SCHEMA IF NOT EXISTS bronze;

CREATE TABLE bronze.company_info_raw (
    research_uuid  uuid PRIMARY KEY,
    team_id        text,
    website        text,
    team_members   jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- false until run_unified_member_pipeline() has exploded the current team_members
    members_synced boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT company_info_raw_team_members_array CHECK (jsonb_typeof(team_members) = 'array'),
    CONSTRAINT company_info_raw_team_id_not_blank CHECK (team_id IS NULL OR btrim(team_id) <> '')
);

COMMENT ON TABLE bronze.company_info_raw IS
    'Researched company/team pages as loaded from raw_company_info*.csv (syncpipe load).';
