-- Normalization shared by the member pipeline and the merge (DESIGN.md, "Matching"):
--   e-mails  trimmed, lower-cased, "mailto:" dropped, invalid ones dropped;
--   phones   to E.164: +1 for North American numbers without a country code, extensions
--            dropped, too short (or of unknown country) dropped;
--   names    case-folded, accents and punctuation removed, whitespace collapsed; Cyrillic
--            and Greek written in Latin letters (romanize()), other scripts' letters kept.
--
-- Set-based on purpose: each function turns a whole input work table into a whole output
-- table with one statement of built-in expressions. A per-row call of a user function costs
-- 5-40 microseconds (millions of rows: minutes); the same expressions inline cost well under
-- one. Callers fill the input table, call the function, read the output table.

-- In:  sp_contacts_in (uid bigint, kind "char" ('e' | 'p'), raw text)
-- Out: sp_contacts    (uid bigint, kind "char", value text COLLATE "C"), distinct, invalid
--                     values dropped.
CREATE OR REPLACE FUNCTION syncpipe_internal.normalize_contacts()
RETURNS bigint
LANGUAGE plpgsql
-- (DISTINCT by a sort: the planner, which cannot estimate the e-mail filter, would hash two
-- million values in batches spilled to disk, 1.8 s slower at 1M persons; undone when the
-- function returns)
SET enable_hashagg = off
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_contacts']);
    -- (values in byte order, COLLATE "C": valid ones are ASCII, and every sort of them is
    -- cheaper)
    CREATE UNLOGGED TABLE syncpipe_work.sp_contacts AS
    SELECT DISTINCT uid, kind, value COLLATE "C" AS value
    FROM (
        SELECT uid, 'e'::"char" AS kind, e AS value
        FROM (
            SELECT uid, lower(btrim(CASE WHEN raw ILIKE '%mailto:%'
                                         THEN regexp_replace(raw, '^\s*mailto:\s*', '', 'i')
                                         ELSE raw END)) AS e
            FROM sp_contacts_in
            WHERE kind = 'e'
            OFFSET 0
        ) m
        -- Simple patterns on purpose: a nested e-mail regex backtracks (60 us an address).
        WHERE e ~ '^[a-z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-z0-9.-]+\.[a-z]{2,}$'
          AND left(e, 1) <> '.' AND strpos(e, '.@') = 0 AND strpos(e, '@.') = 0
          AND strpos(e, '@-') = 0 AND strpos(e, '..') = 0 AND strpos(e, '-.') = 0
          AND strpos(e, '.-') = 0
        UNION ALL
        SELECT uid, 'p'::"char",
               CASE
                   WHEN length(d) = 10 AND NOT plus AND d ~ '^[2-9]' THEN '+1' || d
                   WHEN length(d) = 11 AND d ~ '^1[2-9]' THEN '+' || d
                   WHEN plus AND d !~ '^1' AND length(d) BETWEEN 8 AND 15 THEN '+' || d
                   WHEN NOT plus AND d ~ '^00[1-9][0-9]{7,14}$' THEN '+' || substr(d, 3)
               END
        FROM (
            SELECT uid,
                   regexp_replace(
                       CASE WHEN raw ~* '(x|ext|#)'  -- an extension: "x12", "ext. 12", "#12"
                            THEN regexp_replace(raw, '\s*(x|ext\.?|extension|#)\s*[0-9]+\s*$', '', 'i')
                            ELSE raw END,
                       '[^0-9]', '', 'g') AS d,
                   raw ~ '^\s*\+' AS plus
            FROM sp_contacts_in
            WHERE kind = 'p'
            OFFSET 0  -- evaluate d once per row, not once per reference
        ) p
    ) s
    WHERE value IS NOT NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- A name in Cyrillic or Greek letters written in Latin ones, as passports and most people do
-- ("Иван Петров" is "Ivan Petrov", "Ελένη" is "Eleni"): the name rules, written for Latin
-- letters (typos, nicknames, sounds), then judge it, and the same person written in both
-- scripts is one name. Case is folded by code point on the way, whatever the database's
-- locale. Any other text is returned as it is.
CREATE OR REPLACE FUNCTION syncpipe_internal.romanize(p_name text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog
AS $$
DECLARE
    v text := p_name;
BEGIN
    IF v IS NULL OR v !~ '[\u0370-\u03ff\u0400-\u04ff]' THEN
        RETURN v;
    END IF;
    v := translate(v, 'АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯІЇЄҐЎЂЋЏЉЊЈЃЌЅ',
                      'абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґўђћџљњјѓќѕ');
    v := translate(v, 'ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩΆΈΉΊΌΎΏΪΫς',
                      'αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋσ');
    v := replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(
         replace(replace(replace(v, 'щ', 'shch'), 'ж', 'zh'), 'х', 'kh'), 'ц', 'ts'),
         'ч', 'ch'), 'ш', 'sh'), 'ю', 'yu'), 'я', 'ya'), 'ї', 'yi'), 'є', 'ye'), 'θ', 'th'),
         'χ', 'ch'), 'ψ', 'ps');
    v := replace(replace(v, 'ου', 'ou'), 'ού', 'ou');
    -- (Serbian and Macedonian letters as those languages write them in Latin letters, less
    -- their accents, as unaccent() leaves those: "Ђорђе Ђокић" is "Đorđe Đokić", "dorde
    -- dokic")
    v := replace(replace(replace(replace(v, 'џ', 'dz'), 'љ', 'lj'), 'њ', 'nj'), 'ѕ', 'dz');
    -- (the hard and soft signs, last and without a letter of their own, are dropped)
    RETURN translate(v, 'абвгдеёзийклмнопрстуфыэіґўћјђѓќαβγδεζηικλμνξοπρστυφωάέήίόύώϊϋΐΰъь',
                        'abvgdeeziiklmnoprstufyeigucjdgkavgdeziiklmnxoprstyfoaeiioyoiyiy');
END;
$$;

-- In:  sp_names_in     (uid bigint, raw text)
-- Out: sp_person_names (uid, name_norm, name_key, first_name, last_name, middle, suffix):
--   name_norm  the normalized name;
--   name_key   its core tokens sorted, so "Smith, John" and "John Smith" agree (middle
--              initials left out when two words remain; honorifics and suffixes out);
--   first_name the given name: first core token, or the one after the comma of "Last, First";
--   last_name  the family name: last core token, or the one before that comma;
--   middle     a middle initial, when one is written ("Kimberly A. Munoz");
--   suffix     jr, sr, ii, iii, iv: a father and his son differ only there.
-- A comma before a suffix ("John Smith, Jr.") does not make a "Last, First" name.
CREATE OR REPLACE FUNCTION syncpipe_internal.normalize_person_names()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, extensions, syncpipe_work
AS $$
DECLARE
    v_count bigint;
    -- What a name keeps besides a-z and 0-9 (after unaccent, which leaves Latin letters
    -- ASCII): the letters of the other scripts people write names in (Greek, Cyrillic,
    -- Armenian, Hebrew, Arabic, Syriac, the Indic scripts, Thai, Lao, Myanmar, Georgian,
    -- Hangul, Ethiopic, Khmer, kana, CJK), named by code point: a character class such as
    -- [[:alpha:]] would depend on the database's locale. Their punctuation (the Arabic comma,
    -- the danda, the katakana middle dot...) separates words as a space does. Without these
    -- letters such names were no name at all, and people of one team on its office line
    -- became one agent. (Russian, Ukrainian, Belarusian and Greek letters are written in
    -- Latin ones before this, by romanize(); the other letters of those blocks stay. Case
    -- is folded by lower(), as the database's locale knows how: in one of LC_CTYPE C,
    -- Armenian or Georgian capitals stay as they are.)
    v_strip constant text := '(?:[^a-z0-9\u0370-\u03ff\u0400-\u052f\u0531-\u058f'
        '\u0590-\u05ff\u0600-\u06ff\u0700-\u074f\u0900-\u0dff\u0e00-\u0eff'
        '\u1000-\u109f\u10a0-\u10ff\u1100-\u11ff\u1200-\u137f\u1780-\u17ff'
        '\u1c90-\u1cbf\u3005\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff'
        '\uac00-\ud7af\uff66-\uff9f\U00020000-\U0003134f]'
        '|[\u037e\u0387\u055a-\u055f\u0589\u05be\u05c0\u05c3\u05c6\u05f3\u05f4'
        '\u060c\u061b\u061f\u066a-\u066d\u06d4\u0700-\u070d\u0964\u0965\u0970'
        '\u0e2f\u0e4f\u0e5a\u0e5b\u104a\u104b\u1361-\u1368\u17d4-\u17da\u30fb])+';
    -- What a name loses inside its words: apostrophes ("O'Neil"), and the vowel points of
    -- Hebrew and Arabic and the Arabic stretching line, which one source writes and another
    -- leaves out ("דָּוִד" is "דוד").
    v_drop constant text := '[''’`\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7'
        '\u0610-\u061a\u0640\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8'
        '\u06ea-\u06ed]';
BEGIN
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_person_names', 'sp_name_spellings',
                                                    'sp_name_parts', 'sp_name_cores',
                                                    'sp_name_forms']);
    -- Each spelling is normalized once, then given to every record that has it: people share
    -- names, and the regular expressions below cost more than finding the repeats.
    CREATE UNLOGGED TABLE syncpipe_work.sp_name_spellings AS
        SELECT DISTINCT raw FROM sp_names_in WHERE raw IS NOT NULL;
    -- Spellings other than two plain words (those are settled below): accents, punctuation,
    -- "Last, First", initials, suffixes, honorifics. In two steps, each run by the parallel
    -- workers: a value read several times is computed once in the step before (in a subquery
    -- with OFFSET 0, the other way to compute it once, the leader alone did the work).
    CREATE UNLOGGED TABLE syncpipe_work.sp_name_parts AS
    SELECT raw,
           nullif(btrim(regexp_replace(regexp_replace(lower(
                  CASE WHEN raw ~ '[^\x01-\x7f]'
                       THEN syncpipe_internal.romanize(extensions.unaccent(raw)) ELSE raw END),
                  v_drop, '', 'g'), v_strip, ' ', 'g')), '') AS norm,
           position(',' IN raw) > 0
               AND raw !~* ',\s*(jr|sr|ii|iii|iv|md|phd|esq)\.?\s*$' AS comma
    FROM sp_name_spellings
    WHERE raw !~ '^[A-Za-z]+ [A-Za-z]+$'
       OR raw ~* '^(mr|mrs|ms|miss|dr) | (jr|sr|ii|iii|iv|md|phd|esq)$';
    CREATE UNLOGGED TABLE syncpipe_work.sp_name_cores AS
    SELECT raw, norm,
           substring(' ' || norm || ' ' FROM ' (jr|sr|ii|iii|iv) ') AS suffix,
           CASE WHEN norm ~ '(^| )(jr|sr|ii|iii|iv|mr|mrs|ms|miss|dr|md|phd|esq)( |$)'
                THEN nullif(btrim(regexp_replace(regexp_replace(' ' || norm || ' ',
                     ' (jr|sr|ii|iii|iv|mr|mrs|ms|miss|dr|md|phd|esq)(?= )', ' ', 'g'),
                     ' +', ' ', 'g')), '')
                ELSE norm END AS core,
           CASE WHEN comma THEN nullif(btrim(regexp_replace(regexp_replace(' ' ||
                btrim(regexp_replace(regexp_replace(lower(syncpipe_internal.romanize(
                    extensions.unaccent(split_part(raw, ',', 1)))), v_drop, '', 'g'), v_strip, ' ', 'g'))
                || ' ', ' (jr|sr|ii|iii|iv|mr|mrs|ms|miss|dr|md|phd|esq)(?= )', ' ', 'g'),
                ' +', ' ', 'g')), '') END AS before_core,
           CASE WHEN comma THEN nullif(btrim(regexp_replace(regexp_replace(' ' ||
                btrim(regexp_replace(regexp_replace(lower(syncpipe_internal.romanize(
                    extensions.unaccent(split_part(raw, ',', 2)))), v_drop, '', 'g'), v_strip, ' ', 'g'))
                || ' ', ' (jr|sr|ii|iii|iv|mr|mrs|ms|miss|dr|md|phd|esq)(?= )', ' ', 'g'),
                ' +', ' ', 'g')), '') END AS after_core
    FROM sp_name_parts;
    -- Most names are two plain words ("Jane Doe"): a few string functions settle them.
    CREATE UNLOGGED TABLE syncpipe_work.sp_name_forms AS
    SELECT raw, f || ' ' || l AS name_norm,
           CASE WHEN f <= l THEN f || ' ' || l ELSE l || ' ' || f END AS name_key,
           f AS first_name, l AS last_name, NULL::text AS middle, NULL::text AS suffix
    FROM (
        SELECT raw, lower(split_part(raw, ' ', 1)) AS f, lower(split_part(raw, ' ', 2)) AS l
        FROM sp_name_spellings
        WHERE raw ~ '^[A-Za-z]+ [A-Za-z]+$'
          AND raw !~* '^(mr|mrs|ms|miss|dr) | (jr|sr|ii|iii|iv|md|phd|esq)$'
        OFFSET 0
    ) s
    -- (one CREATE TABLE AS for both, not an INSERT: PostgreSQL runs no part of an INSERT in
    -- parallel)
    UNION ALL
    SELECT raw, norm AS name_norm,
           CASE WHEN core IS NULL THEN NULL
                WHEN position(' ' IN core) = 0 THEN core
                WHEN core !~ ' .* ' THEN least(split_part(core, ' ', 1), split_part(core, ' ', 2))
                                          || ' ' || greatest(split_part(core, ' ', 1),
                                                             split_part(core, ' ', 2))
                ELSE array_to_string(ARRAY(
                         SELECT t FROM unnest(string_to_array(core, ' ')) t
                         WHERE length(t) > 1 OR core !~ '[a-z0-9]{2,} .*[a-z0-9]{2,}'
                         ORDER BY t), ' ')
           END AS name_key,
           CASE WHEN before_core IS NOT NULL AND after_core IS NOT NULL
                THEN split_part(after_core, ' ', 1)
                ELSE nullif(split_part(core, ' ', 1), '') END AS first_name,
           CASE WHEN before_core IS NOT NULL AND after_core IS NOT NULL
                THEN substring(before_core FROM '([^ ]+)$')
                WHEN position(' ' IN core) > 0 THEN substring(core FROM '([^ ]+)$') END
               AS last_name,
           CASE WHEN before_core IS NOT NULL AND after_core IS NOT NULL
                THEN substring(after_core || ' ' FROM ' ([a-z]) ')
                ELSE substring(core FROM ' ([a-z]) ') END AS middle,
           suffix
    FROM sp_name_cores;
    -- (its size and its distinct spellings: without them the planner sorted both sides of
    -- the join below)
    PERFORM syncpipe_internal.work_analyze('sp_name_forms', ARRAY['raw']);
    -- (a record without a name gets a row of NULLs, as every caller expects a row per uid)
    -- (each part cut at 200 letters: no person's name is longer, and a hostile one of a few
    -- thousand letters made an index row larger than a B-tree takes, failing every merge)
    CREATE UNLOGGED TABLE syncpipe_work.sp_person_names AS
    SELECT i.uid, left(f.name_norm, 200) AS name_norm, left(f.name_key, 200) AS name_key,
           left(f.first_name, 200) AS first_name, left(f.last_name, 200) AS last_name,
           f.middle, f.suffix
    FROM sp_names_in i
    LEFT JOIN sp_name_forms f ON f.raw = i.raw;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM syncpipe_internal.merge_work_drop(ARRAY['sp_name_spellings', 'sp_name_parts',
                                                    'sp_name_cores', 'sp_name_forms']);
    RETURN v_count;
END;
$$;

-- Earlier shapes of the name comparison (kept out of the way of the current ones).
DROP FUNCTION IF EXISTS public.names_compatible(text, text, text, text, text, text, text, text);
DROP FUNCTION IF EXISTS public.given_names_equivalent(text, text);

-- The name comparisons are plpgsql with a fixed search_path, like every function of syncpipe
-- (Supabase's advisor, lint 0011, flags any function without one, and a caller's search_path
-- must never decide which levenshtein() runs). A SQL function with a SET clause is not
-- inlined, and PostgreSQL 15 plans it again on every call; plpgsql keeps its plans.

-- (check_function_bodies off: the bodies are checked when first called, not when the deploy's
-- own search_path is in force.)
SET LOCAL check_function_bodies = off;

-- Earlier helpers, no longer used (the member pipeline reads a field inline; the comparisons
-- were SQL text for a while).
DROP FUNCTION IF EXISTS syncpipe_internal.member_field_array(jsonb);
DROP FUNCTION IF EXISTS syncpipe_internal.names_compatible_sql(
    text, text, text, text, text, text, text, text, text, text);
DROP FUNCTION IF EXISTS syncpipe_internal.near_spelling_sql(text, text);
DROP FUNCTION IF EXISTS syncpipe_internal.words_align(text, text);  -- (in names_compatible())

-- A typo apart: one edit (or two swapped letters) for words of 3+ letters, two edits for
-- words of 7+. (levenshtein() refuses a word of more than 255 letters and would fail the
-- whole merge over one hostile name: every call of it, here and written out in the merge's
-- statements, compares the first 255.)
CREATE OR REPLACE FUNCTION syncpipe_internal.near_spelling(p_a text, p_b text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, extensions
AS $$
BEGIN
    -- (plpgsql, not SQL: a SQL function with a SET clause is planned again on every call)
    RETURN CASE
        WHEN least(length(p_a), length(p_b)) >= 7
            THEN extensions.levenshtein(left(p_a, 255), left(p_b, 255)) <= 2
        WHEN least(length(p_a), length(p_b)) >= 3 THEN
            extensions.levenshtein(left(p_a, 255), left(p_b, 255)) <= 1
            OR (length(p_a) = length(p_b)
                AND extensions.levenshtein(left(p_a, 255), left(p_b, 255)) = 2
                AND translate(p_a, p_b, '') = '' AND translate(p_b, p_a, '') = '')
        ELSE false
    END;
END;
$$;

-- Could two names belong to the same person? Used on the pairs that share a contact or a
-- team block: it tells a person's own contact (seen with a nickname, a typo, a missing
-- surname, "Last, First") from a shared one (office line, info@), and finds review
-- candidates. *_canons are the canonical given names of the first name (public.name_variants:
-- Bob and Robert share "robert"), or the first name itself. A differing generational suffix
-- never matches; no name is no evidence against.
-- Also the words in another order, each a typo apart or the same, the shorter name's words
-- all in the longer one ("Romrro Morgan" / "Morgan Romero", "Robett Jacckson" / "Robert
-- Jackson Ochoa"): every word (of 3+ letters) of the name with fewer words matches its own
-- word of the other, with two words at least on the shorter side (a one-word name is judged
-- by the rules before). Symmetric: with as many words on both sides, the name that sorts
-- first is the shorter side (the greedy matching could otherwise answer differently for the
-- two orders).
-- (near_spelling() written out, twice: each call of a function with a search_path of its own
-- saves and restores the setting, which cost about as much as the comparisons themselves:
-- one function for the whole test takes 30% less time on the contact evidence's pairs)
CREATE OR REPLACE FUNCTION syncpipe_internal.names_compatible(
    a_key text, a_first text, a_last text, a_suffix text, a_canons text[],
    b_key text, b_first text, b_last text, b_suffix text, b_canons text[])
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, extensions
AS $$
DECLARE
    -- v_near[k]: the k-th pair of name parts (v_x, v_y) a typo apart, where a rule needs it
    v_x     text[] := ARRAY[a_first, a_last, a_first, b_first];
    v_y     text[] := ARRAY[b_first, b_last, b_last, a_last];
    v_near  boolean[] := '{}';
    v_p     text;
    v_q     text;
    v_short text[];
    v_long  text[];
    v_word  text;
    v_i     integer;
    v_found boolean;
BEGIN
    IF a_key IS NULL OR b_key IS NULL THEN
        RETURN true;
    END IF;
    v_short := string_to_array(a_key, ' ');
    v_long := string_to_array(b_key, ' ');
    IF a_suffix IS DISTINCT FROM b_suffix THEN
        RETURN false;
    ELSIF a_key = b_key OR v_short <@ v_long OR v_long <@ v_short THEN
        RETURN true;  -- the same name, or one with a surname or middle name missing
    END IF;
    FOR v_i IN 1 .. 4 LOOP
        -- (only the pairs a rule below can use)
        CONTINUE WHEN (v_i = 2 AND (a_last = b_last) IS NOT FALSE)
                   OR (v_i = 3 AND (a_last IS NULL AND length(a_first) >= 4) IS NOT TRUE)
                   OR (v_i = 4 AND (b_last IS NULL AND length(b_first) >= 4) IS NOT TRUE);
        v_p := v_x[v_i];
        v_q := v_y[v_i];
        v_near[v_i] := CASE
            WHEN least(length(v_p), length(v_q)) >= 7
                THEN extensions.levenshtein(left(v_p, 255), left(v_q, 255)) <= 2
            WHEN least(length(v_p), length(v_q)) >= 3 THEN
                extensions.levenshtein(left(v_p, 255), left(v_q, 255)) <= 1
                OR (length(v_p) = length(v_q)
                    AND extensions.levenshtein(left(v_p, 255), left(v_q, 255)) = 2
                    AND translate(v_p, v_q, '') = '' AND translate(v_q, v_p, '') = '')
            ELSE false
        END;
    END LOOP;
    IF coalesce(
        -- given names alike (a nickname, a typo, "Li" / "Lii", an initial), family names
        -- the same or a typo apart
        ((a_canons && b_canons
          OR v_near[1]
          OR (least(length(a_first), length(b_first)) = 2
              AND greatest(length(a_first), length(b_first)) = 3
              AND left(a_first, 2) = left(b_first, 2))
          OR (least(length(a_first), length(b_first)) = 1
              AND left(a_first, 1) = left(b_first, 1)))
         AND (a_last = b_last OR v_near[2]))
        -- a one-word name a typo away from a word of the other ("Brown" / "Brrown",
        -- "Brrown" / "Mike Brown")
        OR (a_last IS NULL AND length(a_first) >= 4 AND (v_near[1] OR v_near[3]))
        OR (b_last IS NULL AND length(b_first) >= 4 AND (v_near[1] OR v_near[4])),
        false) THEN
        RETURN true;
    END IF;
    -- The words in another order (see above).
    IF cardinality(v_short) > cardinality(v_long)
       OR (cardinality(v_short) = cardinality(v_long) AND a_key > b_key) THEN
        v_word := a_key;  -- (swapped: v_short the fewer words)
        v_short := v_long;
        v_long := string_to_array(v_word, ' ');
    END IF;
    IF cardinality(v_short) < 2 OR cardinality(v_long) > 4 THEN
        RETURN false;
    END IF;
    FOREACH v_word IN ARRAY v_short LOOP
        IF length(v_word) < 3 THEN
            RETURN false;
        END IF;
        v_found := false;
        FOR v_i IN 1 .. cardinality(v_long) LOOP
            v_p := v_long[v_i];
            IF v_p IS NOT NULL AND (v_p = v_word OR CASE
                    WHEN least(length(v_p), length(v_word)) >= 7
                        THEN extensions.levenshtein(left(v_p, 255), left(v_word, 255)) <= 2
                    WHEN least(length(v_p), length(v_word)) >= 3 THEN
                        extensions.levenshtein(left(v_p, 255), left(v_word, 255)) <= 1
                        OR (length(v_p) = length(v_word)
                            AND extensions.levenshtein(left(v_p, 255), left(v_word, 255)) = 2
                            AND translate(v_p, v_word, '') = '' AND translate(v_word, v_p, '') = '')
                    ELSE false END) THEN
                v_long[v_i] := NULL;  -- (each word of the longer name matches once)
                v_found := true;
                EXIT;
            END IF;
        END LOOP;
        IF NOT v_found THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END;
$$;

-- The letters of a name written in Chinese, Japanese or Korean (Han, kana, Hangul), in
-- their order, spaces left out ("山田 太郎" is "山田太郎"); NULL for any other name. Such a
-- name is compared whole by its letters (names_conflict(); in their order: "김민수" and
-- "김수민" are two people).
CREATE OR REPLACE FUNCTION syncpipe_internal.cjk_letters(p_name text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog
AS $$
BEGIN
    IF p_name IS NULL OR p_name !~ ('[\u3005\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf'
                                    '\u4e00-\u9fff\uac00-\ud7af\uff66-\uff9f'
                                    '\U00020000-\U0003134f]') THEN
        RETURN NULL;
    END IF;
    RETURN replace(p_name, ' ', '');
END;
$$;

-- Do two names on one key say "two different people"? Given names (two letters or more)
-- that are neither the same, a nickname, a typo apart nor one the start of the other, or
-- family names that neither sound alike nor are two edits apart, or a different
-- generational suffix; in both orders of the words (a name written "Last First").
-- A missing part never conflicts. (Names in two scripts are compared as they are, and so
-- nearly always conflict: "李小龙" and "Bruce Lee" stay apart, the safe side; read as no
-- conflict, one Cyrillic letter in a Latin name switched the test off, and a Latin name
-- chained two people named in Cyrillic. Cyrillic and Greek are in Latin letters by then:
-- romanize().) Two names in Chinese, Japanese or Korean are compared
-- whole, by the letters of their given and family names (cjk_letters()): their letters are
-- words, so neither a typo nor an initial
-- applies, and a name is often written as one word ("李小龙" and "王小明" conflict, "山田 太郎"
-- and "山田太郎" do not). The merge writes the same test out in
-- merge_contact_evidence() and merge_split_bridges() (no function call per pair); this one
-- is for tests and people.
-- (A double surname is normalized to its last word, so
-- "Ward-Snyder" conflicts with "Ward": a shared key stays shared, the safe side.)
CREATE OR REPLACE FUNCTION syncpipe_internal.names_conflict(
    a_first text, a_last text, a_suffix text, a_canons text[],
    b_first text, b_last text, b_suffix text, b_canons text[])
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, extensions
AS $$
DECLARE
    a_cjk text := syncpipe_internal.cjk_letters(concat(a_first, a_last));
    b_cjk text := syncpipe_internal.cjk_letters(concat(b_first, b_last));
BEGIN
    IF a_cjk IS NOT NULL AND b_cjk IS NOT NULL THEN
        RETURN a_cjk <> b_cjk;
    END IF;
    IF a_suffix IS DISTINCT FROM b_suffix THEN
        RETURN true;
    END IF;
    RETURN (syncpipe_internal.given_names_differ(a_first, b_first, a_canons, b_canons)
            OR syncpipe_internal.family_names_differ(a_last, b_last))
       AND (syncpipe_internal.given_names_differ(a_first, b_last, a_canons, ARRAY[b_last])
            OR syncpipe_internal.family_names_differ(a_last, b_first));
END;
$$;

CREATE OR REPLACE FUNCTION syncpipe_internal.given_names_differ(p_a text, p_b text,
                                                               p_a_canons text[],
                                                               p_b_canons text[])
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, extensions
AS $$
BEGIN
    RETURN coalesce(length(p_a) >= 2 AND length(p_b) >= 2 AND p_a <> p_b
                    AND NOT coalesce(p_a_canons && p_b_canons, false)
                    AND NOT syncpipe_internal.near_spelling(p_a, p_b)
                    AND NOT (least(length(p_a), length(p_b)) >= 3
                             AND (starts_with(p_a, p_b) OR starts_with(p_b, p_a))),
                    false);
END;
$$;

CREATE OR REPLACE FUNCTION syncpipe_internal.family_names_differ(p_a text, p_b text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, extensions
AS $$
BEGIN
    RETURN coalesce(length(p_a) >= 2 AND length(p_b) >= 2 AND p_a <> p_b
                    AND extensions.levenshtein(left(p_a, 255), left(p_b, 255)) > 2
                    -- (a sound for Latin letters only: to dmetaphone() the names of other
                    -- scripts sound alike; Cyrillic and Greek are romanized before)
                    AND (p_a ~ '[^a-z0-9]' OR p_b ~ '[^a-z0-9]'
                         OR extensions.dmetaphone(p_a) <> extensions.dmetaphone(p_b)),
                    false);
END;
$$;

RESET check_function_bodies;

-- (EXECUTE on every function of syncpipe_internal is revoked from PUBLIC in sql/rls/030.)

-- Nothing here is for the API roles (new functions in a schema get EXECUTE for PUBLIC by
-- default; a per-schema default privilege cannot take that back).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA syncpipe_internal FROM PUBLIC, anon, authenticated,
    service_role;
