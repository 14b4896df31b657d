-- Match weights (issue 15): what two records share, in the spirit of Fellegi-Sunter. Each
-- part is log2(m / u): m the chance that the same person's two records show it, u the chance
-- that two different persons' records do. For a shared name, u is the share of records holding
-- that name (term-frequency adjustment: a surname held by 2 records says more than one held by
-- 2,000); the other parts use fixed estimates (see DESIGN.md, "Matching"). The weight ranks
-- the review queue and is stored, with its parts in words, on every review item.

SET LOCAL check_function_bodies = off;

-- How two name parts relate: same, nickname, typo, initial, missing or different.
-- *_canons: the canonical given names of a given name (public.name_variants), NULL for family
-- names. (plpgsql: a SQL function with a SET clause is planned on every call)
CREATE OR REPLACE FUNCTION syncpipe_internal.name_part_relation(p_a text, p_b text,
                                                               p_a_canons text[],
                                                               p_b_canons text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, extensions
AS $$
BEGIN
    RETURN CASE
        WHEN p_a IS NULL OR p_b IS NULL OR p_a = '' OR p_b = '' THEN 'missing'
        WHEN p_a = p_b THEN 'same'
        WHEN least(length(p_a), length(p_b)) = 1 THEN
            CASE WHEN left(p_a, 1) = left(p_b, 1) THEN 'initial' ELSE 'different' END
        WHEN p_a_canons && p_b_canons THEN 'nickname'
        WHEN syncpipe_internal.near_spelling(p_a, p_b)
             OR (least(length(p_a), length(p_b)) = 2 AND greatest(length(p_a), length(p_b)) = 3
                 AND left(p_a, 2) = left(p_b, 2)) THEN 'typo'
        ELSE 'different'
    END;
END;
$$;

-- The weight of a candidate pair and its parts in words, as jsonb
-- {"weight": 9.3, "parts": ["same family name brown (12 records): +8.2", ...]}.
--   p_given, p_family   relations from name_part_relation()
--   p_given_n, p_family_n, p_total   records holding the shared given / family name, and all
--   p_team             'same', 'different' or 'unknown'
--   p_middle_conflict  different middle initials
--   p_phones           'shared', 'different' (both have personal phones, none in common) or NULL
--   p_emails           'shared', 'different' or NULL
CREATE OR REPLACE FUNCTION syncpipe_internal.pair_weight(
    p_given text, p_given_value text, p_given_n bigint,
    p_family text, p_family_value text, p_family_n bigint, p_total bigint,
    p_team text, p_middle_conflict boolean, p_phones text, p_emails text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, extensions
AS $$
DECLARE
    v_w     numeric[] := '{}';
    v_label text[] := '{}';
    v_total numeric := greatest(coalesce(p_total, 2), 2);
    v_parts jsonb := '[]';
    v_sum   numeric := 0;
    i       integer;
BEGIN
    -- (plpgsql, not SQL: a SQL function with a SET clause is planned on every call)
    IF p_given = 'same' THEN
        v_w := v_w || round(least(8, (ln((0.9 * v_total
                                         / greatest(coalesce(p_given_n, 1), 1))::float8) / ln(2.0::float8)))::numeric, 1);
        v_label := v_label || format('same given name %s (%s records)', p_given_value,
                                     coalesce(p_given_n, 1));
    ELSIF p_given = 'nickname' THEN
        v_w := v_w || 3.0; v_label := v_label || 'given names a known nickname apart'::text;
    ELSIF p_given = 'typo' THEN
        v_w := v_w || 2.0; v_label := v_label || 'given names a typo apart'::text;
    ELSIF p_given = 'initial' THEN
        v_w := v_w || 1.0; v_label := v_label || 'given name as an initial'::text;
    ELSIF p_given = 'different' THEN
        v_w := v_w || -4.0; v_label := v_label || 'different given names'::text;
    END IF;
    IF p_family = 'same' THEN
        v_w := v_w || round(least(10, (ln((0.9 * v_total
                                          / greatest(coalesce(p_family_n, 1), 1))::float8) / ln(2.0::float8)))::numeric, 1);
        v_label := v_label || format('same family name %s (%s records)', p_family_value,
                                     coalesce(p_family_n, 1));
    ELSIF p_family = 'typo' THEN
        v_w := v_w || 2.0; v_label := v_label || 'family names a typo apart'::text;
    ELSIF p_family = 'initial' THEN
        v_w := v_w || 0.5; v_label := v_label || 'family name as an initial'::text;
    ELSIF p_family = 'different' THEN
        v_w := v_w || -5.0; v_label := v_label || 'different family names'::text;
    END IF;
    -- The team carries the prior: two records of one team are a dozen candidates apart, two
    -- records of different teams thousands (m 0.9 / u ~ 1/1000 in; m 0.1 / u ~ 1 out).
    IF p_team = 'same' THEN
        v_w := v_w || 10.0; v_label := v_label || 'same team'::text;
    ELSIF p_team = 'different' THEN
        v_w := v_w || -3.0; v_label := v_label || 'different teams'::text;
    END IF;
    IF p_middle_conflict THEN
        v_w := v_w || -3.0; v_label := v_label || 'different middle initials'::text;
    END IF;
    IF p_phones = 'shared' THEN
        v_w := v_w || 8.0; v_label := v_label || 'a personal phone in common'::text;
    ELSIF p_phones = 'different' THEN
        v_w := v_w || -6.0; v_label := v_label || 'different personal phones'::text;
    END IF;
    IF p_emails = 'shared' THEN
        v_w := v_w || 9.0; v_label := v_label || 'a personal e-mail in common'::text;
    ELSIF p_emails = 'different' THEN
        v_w := v_w || -1.5; v_label := v_label || 'different e-mails'::text;
    END IF;
    FOR i IN 1 .. coalesce(array_length(v_w, 1), 0) LOOP
        v_sum := v_sum + v_w[i];
        v_parts := v_parts || to_jsonb(v_label[i] || ': '
                                       || CASE WHEN v_w[i] >= 0 THEN '+' ELSE '' END
                                       || v_w[i]::text);
    END LOOP;
    RETURN jsonb_build_object('weight', v_sum, 'parts', v_parts);
END;
$$;

RESET check_function_bodies;

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
