-- The auditor's page lists the sealed entries newest first, by time then number, one page at a
-- time, filtered by structure (one, or a commune's few), kind and period. Each filter then reads
-- about one page of an index instead of the journal from its newest entry: the time for the
-- council's unfiltered page and any period, the structure for the commune's and one structure's
-- (one walk per structure, merged); a kind walks `journal_kind_at` (migration 0014). Both new
-- indexes hold sealed entries only: an entry enters them when the sealer numbers it.
CREATE INDEX journal_sealed_at ON journal (at, seq) WHERE seq IS NOT NULL;
CREATE INDEX journal_structure_at ON journal (structure_id, at, seq) WHERE seq IS NOT NULL;
