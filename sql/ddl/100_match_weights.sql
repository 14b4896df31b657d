-- Match weights (issue 15). Every link and review item carries a weight in the spirit of
-- Fellegi-Sunter: what the two records share or not, each part adjusted by how common the
-- shared value is (a surname held by 2 agents says more than one held by 2,000).

-- How many matched records carry each given (f) and family (l) name: the frequencies behind
-- the name parts of a weight, kept up to date by every merge (internal: the API roles have no
-- privilege on this schema).
CREATE TABLE syncpipe_internal.merge_name_frequencies (
    part    "char" NOT NULL,
    value   text COLLATE "C" NOT NULL,
    records bigint NOT NULL,
    PRIMARY KEY (part, value),
    CONSTRAINT merge_name_frequencies_part_known CHECK (part IN ('f', 'l'))
);

COMMENT ON TABLE syncpipe_internal.merge_name_frequencies IS
    'Internal: records per given (f) and family (l) name, for the weights of name evidence.';

-- The weight of the link that placed a record (its parts are in words on review items).
ALTER TABLE public.unified_agent_sources ADD COLUMN match_weight real;
-- The weight of a review item: the queue is ranked by it, strongest first.
ALTER TABLE public.merge_review_queue ADD COLUMN weight real;

CREATE INDEX merge_review_queue_rank_idx ON public.merge_review_queue (weight DESC NULLS LAST, id)
    WHERE status = 'open';
