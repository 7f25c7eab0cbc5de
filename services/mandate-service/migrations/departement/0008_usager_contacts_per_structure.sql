-- A usager's mobile phone and postal address are given to one structure, for that structure's
-- receipts: another structure holding a mandate for the same person cannot redirect them (a
-- wrong or hostile number would send the first structure's receipts to a stranger). The
-- e-mail stays on the usager: it comes from FranceConnect, not from a structure.
CREATE TABLE usager_contacts (
    usager_id      uuid NOT NULL REFERENCES usagers (id) ON DELETE CASCADE,
    structure_id   uuid NOT NULL REFERENCES structures (id),
    phone          text CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    postal_address text CHECK (length(postal_address) BETWEEN 1 AND 400),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     uuid,
    PRIMARY KEY (usager_id, structure_id)
);
CREATE INDEX usager_contacts_structure ON usager_contacts (structure_id);

-- Expand and backfill: what was known applies to every structure that holds a mandate for the
-- person. `usagers.phone` and `usagers.postal_address` are no longer read; a later migration
-- drops them.
INSERT INTO usager_contacts (usager_id, structure_id, phone, postal_address)
SELECT DISTINCT m.usager_id, m.structure_id, u.phone, u.postal_address
FROM mandates m
JOIN usagers u ON u.id = m.usager_id
WHERE u.phone IS NOT NULL OR u.postal_address IS NOT NULL;
