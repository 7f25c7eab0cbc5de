-- How far the hourly completion of `usager_index` has read each territory's usagers: a run
-- reads only those created since its territory's mark (less an hour, for transactions still
-- open when the mark was taken), not every usager of France each hour. No mark: the whole
-- territory is read, in batches.
CREATE TABLE usager_index_marks (
    departement_code text PRIMARY KEY REFERENCES departements (code),
    through          timestamptz NOT NULL
);
