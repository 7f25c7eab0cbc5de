-- The aidant's activity page counts, over the twelve months it shows, the people they helped and
-- the mandates they created and used, from the journal. The index it walked (`professional_id,
-- at`) sent each of those entries to the table: for an aidant of a busy France Services, tens of
-- thousands of scattered pages a view. This one carries what the counts need (the kind and the
-- person), so they are read from the index alone; it replaces the former one, which nothing else
-- reads.
CREATE INDEX journal_professional_acts ON journal (professional_id, at) INCLUDE (kind, usager_id)
    WHERE professional_id IS NOT NULL;
DROP INDEX journal_professional;
-- Reading from an index alone needs the table's pages marked visible to all, which vacuum does;
-- every entry is updated once by the sealer, so the journal is vacuumed after each hundredth of
-- it changes or is added instead of each fifth (only the pages changed since are read).
ALTER TABLE journal SET (autovacuum_vacuum_scale_factor = 0.01,
                         autovacuum_vacuum_insert_scale_factor = 0.01);
