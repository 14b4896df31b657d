-- The shared contacts' values in byte order (COLLATE "C"), as every other contact value the
-- merge keeps (public.merge_agent_contacts, sql/ddl/050) and computes. In the database's
-- collation their key's index served no probe by a value in byte order: each probe read
-- every shared value of its kind (36k at 1M persons, 1.5 ms a probe), and the probes of an
-- incremental run added up to 0.1 s even for a hundred records. Equality is unchanged
-- (both collations are deterministic), and so are the values; the key's index is rebuilt.
ALTER TABLE public.merge_shared_contacts ALTER COLUMN value TYPE text COLLATE "C";
