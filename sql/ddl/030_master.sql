-- The master table of agents, its lineage, the review queue and the merge log.

CREATE TABLE public.new_unified_agents (
    agent_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    full_name        text,
    emails           text[] NOT NULL DEFAULT '{}',
    phone_numbers    text[] NOT NULL DEFAULT '{}',
    source_team_id   text,
    confidence_score smallint NOT NULL DEFAULT 100,
    needs_review     boolean NOT NULL DEFAULT false,
    source_count     integer NOT NULL DEFAULT 0,
    -- set when a later run found this agent to be the same person as another: the survivor
    merged_into      bigint REFERENCES public.new_unified_agents (agent_id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT new_unified_agents_confidence_range CHECK (confidence_score BETWEEN 0 AND 100),
    CONSTRAINT new_unified_agents_not_self_merged CHECK (merged_into IS DISTINCT FROM agent_id)
);

COMMENT ON TABLE public.new_unified_agents IS
    'Master table: one row per agent. Rows with merged_into set are retired ids kept resolvable.';

-- The merge probes these once per pending contact. Without fastupdate every probe reads the
-- main tree only; with it, each would also scan the pending list that updates pile up (with
-- autovacuum off, tens of thousands of entries: 0.5 ms a probe instead of 0.05).
CREATE INDEX new_unified_agents_emails_gin ON public.new_unified_agents USING gin (emails)
    WITH (fastupdate = off);
CREATE INDEX new_unified_agents_phones_gin ON public.new_unified_agents
    USING gin (phone_numbers) WITH (fastupdate = off);
CREATE INDEX new_unified_agents_team_idx ON public.new_unified_agents (source_team_id);
-- Name search for people working the review queue (`WHERE full_name % 'jon smith'`).
CREATE INDEX new_unified_agents_name_trgm
    ON public.new_unified_agents USING gin (full_name gin_trgm_ops);
CREATE INDEX new_unified_agents_review_idx
    ON public.new_unified_agents (agent_id) WHERE needs_review;
CREATE INDEX new_unified_agents_merged_into_idx
    ON public.new_unified_agents (merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE public.unified_agent_sources (
    source         text NOT NULL,
    source_id      text NOT NULL,
    agent_id       bigint NOT NULL REFERENCES public.new_unified_agents (agent_id),
    match_rule     text NOT NULL,
    confidence     smallint NOT NULL,
    matched_at     timestamptz NOT NULL DEFAULT now(),
    -- What the merge compared, as it was when the record was matched (so an incremental run
    -- compares new records with old ones without normalizing everything again).
    source_version timestamptz NOT NULL,
    team_id        text,
    full_name      text,
    name_norm      text,
    name_key       text,
    first_name     text,
    last_name      text,
    middle         text,
    suffix         text,
    PRIMARY KEY (source, source_id),
    CONSTRAINT unified_agent_sources_confidence_range CHECK (confidence BETWEEN 0 AND 100),
    CONSTRAINT unified_agent_sources_source_known CHECK (source IN ('new_agents', 'company_member'))
);

COMMENT ON TABLE public.unified_agent_sources IS
    'Lineage: the agent each processed source record belongs to, the rule that placed it, and '
    'the normalized name the merge compared.';

CREATE INDEX unified_agent_sources_agent_idx ON public.unified_agent_sources (agent_id);
CREATE INDEX unified_agent_sources_team_idx ON public.unified_agent_sources (team_id);

CREATE TABLE public.merge_review_queue (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id           bigint NOT NULL REFERENCES public.new_unified_agents (agent_id),
    candidate_agent_id bigint NOT NULL REFERENCES public.new_unified_agents (agent_id),
    rule               text NOT NULL,
    confidence         smallint NOT NULL,
    evidence           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status             text NOT NULL DEFAULT 'open',
    decided_at         timestamptz,
    decided_by         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT merge_review_queue_status_known CHECK (status IN ('open', 'accepted', 'rejected')),
    CONSTRAINT merge_review_queue_confidence_range CHECK (confidence BETWEEN 0 AND 100),
    CONSTRAINT merge_review_queue_distinct_agents CHECK (agent_id <> candidate_agent_id),
    CONSTRAINT merge_review_queue_decision_recorded CHECK ((status = 'open') = (decided_at IS NULL))
);

COMMENT ON TABLE public.merge_review_queue IS
    'Doubtful pairs of agents awaiting a person; decisions are kept and respected by later runs.';

CREATE UNIQUE INDEX merge_review_queue_open_pair_key ON public.merge_review_queue
    (least(agent_id, candidate_agent_id), greatest(agent_id, candidate_agent_id))
    WHERE status = 'open';
CREATE INDEX merge_review_queue_candidate_idx ON public.merge_review_queue (candidate_agent_id);
CREATE INDEX merge_review_queue_agent_idx ON public.merge_review_queue (agent_id);

CREATE TABLE public.unified_merge_logs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_kind        text NOT NULL DEFAULT 'merge',
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    total_processed integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'running',
    error_message   text,
    counts          jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT unified_merge_logs_status_known CHECK (status IN ('running', 'success', 'failed')),
    CONSTRAINT unified_merge_logs_finished CHECK ((status = 'running') = (finished_at IS NULL))
);

COMMENT ON TABLE public.unified_merge_logs IS
    'One row per member-pipeline or merge run: running, then success or failed with the reason.';
