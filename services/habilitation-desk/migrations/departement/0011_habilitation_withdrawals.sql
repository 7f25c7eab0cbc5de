-- Withdrawals of an aidant's habilitation in a structure (product.md §4.7), by the structure's
-- référent or the national team, with the reason. The role itself lives in the platform schema
-- and is removed first; this is the territory's record, referenced by the journal.
CREATE TABLE habilitation_withdrawals (
    id              uuid PRIMARY KEY,
    structure_id    uuid NOT NULL REFERENCES structures (id),
    professional_id uuid NOT NULL,
    reason          text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 2000),
    withdrawn_by    uuid NOT NULL,
    by_national     boolean NOT NULL,
    withdrawn_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX habilitation_withdrawals_structure ON habilitation_withdrawals (structure_id, withdrawn_at);
ALTER TABLE habilitation_files ADD COLUMN withdrawal_id uuid REFERENCES habilitation_withdrawals (id);
