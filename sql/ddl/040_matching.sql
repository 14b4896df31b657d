-- Working tables of the merge, and its reference data. Internal to syncpipe: the merge keeps
-- one normalized row per source record (so an incremental run compares new records with old
-- ones without normalizing everything again), the contact keys of each record, which
-- contacts are shared by different people, and the decisions people took in review.

-- Given names and the names they are also known by (nicknames, short forms). Two given names
-- are equivalent when they share a canonical name.
CREATE TABLE public.name_variants (
    variant   text NOT NULL,
    canonical text NOT NULL,
    PRIMARY KEY (variant, canonical)
);

COMMENT ON TABLE public.name_variants IS
    'Given-name variants (nicknames, short forms) -> canonical given name, for name matching.';

INSERT INTO public.name_variants (variant, canonical)
SELECT v, c FROM (VALUES
    ('robert', 'bob,rob,bobby,robby,bert'), ('william', 'bill,will,billy,willy,liam'),
    ('richard', 'rick,dick,rich,ricky,richie'), ('james', 'jim,jimmy,jamie,jimbo'),
    ('john', 'jack,johnny,jon'), ('jonathan', 'jon,jonny,john'), ('michael', 'mike,mikey,mick'),
    ('thomas', 'tom,tommy'), ('joseph', 'joe,joey,jo'), ('charles', 'charlie,chuck,chas'),
    ('christopher', 'chris,kit,topher'), ('daniel', 'dan,danny'), ('matthew', 'matt,matty'),
    ('anthony', 'tony'), ('steven', 'steve,stevie'), ('stephen', 'steve,stevie'),
    ('andrew', 'andy,drew'), ('joshua', 'josh'), ('kenneth', 'ken,kenny'),
    ('edward', 'ed,eddie,ted,ned'), ('ronald', 'ron,ronnie'), ('timothy', 'tim,timmy'),
    ('nicholas', 'nick,nicky'), ('benjamin', 'ben,benny'), ('samuel', 'sam,sammy'),
    ('gregory', 'greg'), ('alexander', 'alex,al,xander'), ('patrick', 'pat,paddy'),
    ('raymond', 'ray'), ('gerald', 'jerry,gerry'), ('lawrence', 'larry'), ('jeffrey', 'jeff'),
    ('geoffrey', 'geoff,jeff'), ('donald', 'don,donnie'), ('douglas', 'doug'),
    ('frederick', 'fred,freddie'), ('henry', 'hank,harry'), ('harold', 'harry,hal'),
    ('peter', 'pete'), ('philip', 'phil'), ('phillip', 'phil'), ('vincent', 'vince,vinny'),
    ('zachary', 'zach,zack'), ('nathan', 'nate'), ('nathaniel', 'nate,nat'),
    ('jacob', 'jake'), ('david', 'dave,davey'), ('walter', 'walt,wally'),
    ('elizabeth', 'liz,beth,betty,lizzie,eliza,betsy,libby'), ('jennifer', 'jen,jenny,jenn'),
    ('patricia', 'pat,patty,trish,tricia'), ('margaret', 'maggie,peggy,meg,marge,greta'),
    ('katherine', 'kate,kathy,katie,kat,kay'), ('catherine', 'cathy,kate,katie,cat'),
    ('kathleen', 'kathy,kate,katie'), ('susan', 'sue,susie,suzy'), ('deborah', 'deb,debbie'),
    ('rebecca', 'becky,becca'), ('kimberly', 'kim'), ('jessica', 'jess,jessie'),
    ('victoria', 'vicky,tori,vicki'), ('christina', 'tina,chris,christy'),
    ('christine', 'chris,christy,tina'), ('samantha', 'sam,sammy'),
    ('alexandra', 'alex,lexi,sandra'), ('abigail', 'abby,gail'), ('barbara', 'barb,babs'),
    ('cynthia', 'cindy'), ('pamela', 'pam'), ('judith', 'judy'), ('theresa', 'terry,tess'),
    ('dorothy', 'dot,dottie'), ('nancy', 'nan'), ('jacqueline', 'jackie'),
    ('stephanie', 'steph'), ('melissa', 'missy,mel'), ('amanda', 'mandy'),
    ('sandra', 'sandy'), ('angela', 'angie'), ('virginia', 'ginny'), ('frances', 'fran'),
    ('francis', 'frank'), ('francisco', 'paco,pancho,frank'), ('jose', 'pepe'),
    ('alejandro', 'alex'), ('eduardo', 'eddie,lalo'), ('guillermo', 'memo'),
    ('roberto', 'beto'), ('alberto', 'beto,al'), ('ignacio', 'nacho'),
    ('josephine', 'jo,josie'), ('johanna', 'jo'), ('madeline', 'maddie'),
    ('natalie', 'nat'), ('natalia', 'nat'), ('olivia', 'liv'), ('isabella', 'bella,izzy'),
    ('isabel', 'izzy,bella'), ('gabriel', 'gabe'), ('gabriella', 'gabby'),
    ('maximilian', 'max'), ('maxwell', 'max'), ('leonard', 'leo,len,lenny'),
    ('terrence', 'terry'), ('bradley', 'brad'), ('jeremy', 'jerry'), ('louis', 'lou'),
    ('louise', 'lou'), ('lucas', 'luke'), ('mathew', 'matt'), ('dominic', 'dom'),
    ('eugene', 'gene'), ('albert', 'al,bert'), ('allen', 'al'), ('alan', 'al')
) AS t(c, variants)
CROSS JOIN LATERAL unnest(string_to_array(c || ',' || variants, ',')) AS v
ON CONFLICT DO NOTHING;

-- Contacts used by different people (an office line, info@): not evidence for a merge.
CREATE TABLE public.merge_shared_contacts (
    kind       "char" NOT NULL,
    value      text NOT NULL,
    records    integer NOT NULL,
    names      integer NOT NULL,
    example    text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);

COMMENT ON TABLE public.merge_shared_contacts IS
    'Internal: e-mails and phones seen with names of different people; never merge evidence.';

-- Review decisions between agents, kept for every later run.
CREATE TABLE public.merge_decisions (
    agent_low   bigint NOT NULL REFERENCES public.new_unified_agents (agent_id),
    agent_high  bigint NOT NULL REFERENCES public.new_unified_agents (agent_id),
    decision    text NOT NULL,
    review_id   bigint REFERENCES public.merge_review_queue (id),
    decided_at  timestamptz NOT NULL DEFAULT now(),
    decided_by  text NOT NULL,
    PRIMARY KEY (agent_low, agent_high),
    CONSTRAINT merge_decisions_known CHECK (decision IN ('accepted', 'rejected')),
    CONSTRAINT merge_decisions_ordered CHECK (agent_low < agent_high)
);

COMMENT ON TABLE public.merge_decisions IS
    'Internal: accepted and rejected review pairs; a rejected pair is never proposed again.';

-- Agents whose records changed outside a merge (a member removed from its page, a source row
-- deleted): the next merge recomputes their golden record.
CREATE TABLE public.merge_dirty_agents (
    agent_id bigint PRIMARY KEY REFERENCES public.new_unified_agents (agent_id),
    since    timestamptz NOT NULL DEFAULT now()
);
