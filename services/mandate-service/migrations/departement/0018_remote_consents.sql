-- Remote consent (product.md §6): the aidant prepares a mandate for a person who is not at the
-- counter; the person receives a single-use link (only its hash is kept), identifies with
-- FranceConnect on their own device, reads the recap and consents or refuses. Nothing exists
-- in `mandates` before the consent. The person as the aidant named them (names, birth date) is
-- what FranceConnect's identity must match; the row is deleted 30 days after it is decided or
-- expired (`purge_mandate_drafts`).
CREATE TABLE remote_consents (
    id              uuid PRIMARY KEY,
    structure_id    uuid NOT NULL REFERENCES structures (id),
    aidant_id       uuid NOT NULL,
    categories      text[] NOT NULL CHECK (cardinality(categories) >= 1),
    duration_days   integer NOT NULL CHECK (duration_days IN (1, 31, 182, 365)),
    renewal_of      uuid REFERENCES mandates (id),
    given_name      text NOT NULL CHECK (length(given_name) BETWEEN 1 AND 100),
    family_name     text NOT NULL CHECK (length(family_name) BETWEEN 1 AND 100),
    birthdate       date NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('sms', 'email')),
    destination     text NOT NULL CHECK (length(destination) BETWEEN 3 AND 254),
    language        text NOT NULL DEFAULT 'fr',
    link_hash       bytea NOT NULL UNIQUE,
    link_expires_at timestamptz NOT NULL,
    sends           integer NOT NULL DEFAULT 1 CHECK (sends BETWEEN 1 AND 2),
    -- The device that started the identification: the link works on it alone afterwards.
    browser_hash    bytea,
    draft_id        uuid,
    opened_at       timestamptz,
    identified_at   timestamptz,
    outcome         text CHECK (outcome IN ('consented', 'refused', 'cancelled')),
    decided_at      timestamptz,
    mandate_id      uuid REFERENCES mandates (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome IS NULL) = (decided_at IS NULL)),
    CHECK ((outcome = 'consented') = (mandate_id IS NOT NULL))
);
CREATE INDEX remote_consents_structure ON remote_consents (structure_id, created_at DESC);
CREATE INDEX remote_consents_draft ON remote_consents (draft_id) WHERE draft_id IS NOT NULL;

-- The language the explanation was given in (FALC French or a translation), carried by the
-- attestation beside French.
ALTER TABLE mandate_drafts ADD COLUMN language text NOT NULL DEFAULT 'fr';
