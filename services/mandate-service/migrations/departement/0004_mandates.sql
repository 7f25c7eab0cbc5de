-- Usagers, mandates and their authorisations, FranceConnect flows in progress, and the
-- territory's journal.

-- The démarche categories a structure handles (product.md §6); at least one stays.
ALTER TABLE structures
    ADD COLUMN demarches text[] NOT NULL
        DEFAULT ARRAY['papiers','famille','social','travail','logement','transports','argent',
                      'justice','etranger','loisirs']
        CHECK (cardinality(demarches) >= 1
               AND demarches <@ ARRAY['papiers','famille','social','travail','logement',
                                      'transports','argent','justice','etranger','loisirs']);

-- A person helped, identified by FranceConnect: matched on the pairwise `sub` FranceConnect
-- gives our client. The identity is the one FranceConnect asserted at the last mandate.
CREATE TABLE usagers (
    id                 uuid PRIMARY KEY,
    fc_sub             text NOT NULL UNIQUE,
    given_name         text NOT NULL,
    family_name        text NOT NULL,
    preferred_username text,
    birthdate          text NOT NULL CHECK (birthdate ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    gender             text NOT NULL CHECK (gender IN ('male', 'female')),
    birthplace         text NOT NULL DEFAULT '',
    birthcountry       text NOT NULL CHECK (birthcountry ~ '^[0-9]{5}$'),
    email              text,
    -- Lower case, without accents: what a name search matches.
    search_name        text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usagers_search ON usagers USING gin (search_name public.gin_trgm_ops);

-- A mandate between a usager and a structure (the legal mandataire), made by an aidant.
CREATE TABLE mandates (
    id                  uuid PRIMARY KEY,
    structure_id        uuid NOT NULL REFERENCES structures (id),
    usager_id           uuid NOT NULL REFERENCES usagers (id),
    created_by          uuid NOT NULL,
    created_at          timestamptz NOT NULL,
    duration_days       integer NOT NULL CHECK (duration_days IN (1, 31, 182, 365)),
    expires_at          timestamptz NOT NULL,
    legal_text_version  text NOT NULL,
    renewal_of          uuid REFERENCES mandates (id),
    attestation_id      uuid,
    attestation_sha256  bytea,
    -- Set when every authorisation has ended early (revoked or superseded).
    ended_at            timestamptz,
    ended_reason        text CHECK (ended_reason IN ('revoked', 'superseded')),
    reminder_sent_at    timestamptz,
    idempotency_key     text UNIQUE,
    CHECK (expires_at > created_at)
);
CREATE INDEX mandates_structure_created ON mandates (structure_id, created_at DESC, id DESC);
CREATE INDEX mandates_structure_expiry ON mandates (structure_id, expires_at);
CREATE INDEX mandates_usager ON mandates (usager_id, structure_id);
CREATE INDEX mandates_reminder ON mandates (expires_at)
    WHERE reminder_sent_at IS NULL AND ended_at IS NULL AND duration_days >= 182;

-- One démarche category of a mandate. Live = not revoked, not superseded, mandate not expired.
CREATE TABLE authorisations (
    id              uuid PRIMARY KEY,
    mandate_id      uuid NOT NULL REFERENCES mandates (id),
    structure_id    uuid NOT NULL,
    usager_id       uuid NOT NULL,
    category        text NOT NULL CHECK (category IN ('papiers','famille','social','travail',
                        'logement','transports','argent','justice','etranger','loisirs')),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_by      uuid,
    superseded_at   timestamptz,
    superseded_by   uuid REFERENCES mandates (id),
    revocation_attestation_id uuid,
    UNIQUE (mandate_id, category)
);
CREATE INDEX authorisations_live ON authorisations (structure_id, usager_id, category)
    WHERE revoked_at IS NULL AND superseded_at IS NULL;

-- A mandate being prepared: chosen terms, then the FranceConnect round trip (state and nonce
-- bound to the aidant's session), then the identity until the recap is confirmed. Minutes.
CREATE TABLE mandate_drafts (
    id              uuid PRIMARY KEY,
    structure_id    uuid NOT NULL REFERENCES structures (id),
    aidant_id       uuid NOT NULL,
    session_hash    bytea NOT NULL,
    categories      text[] NOT NULL CHECK (cardinality(categories) >= 1),
    duration_days   integer NOT NULL CHECK (duration_days IN (1, 31, 182, 365)),
    renewal_of      uuid REFERENCES mandates (id),
    state_hash      bytea NOT NULL UNIQUE,
    nonce           text NOT NULL,
    logout_state_hash bytea UNIQUE,
    identity        jsonb,
    usager_id       uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    completed_at    timestamptz
);
CREATE INDEX mandate_drafts_expiry ON mandate_drafts (expires_at);

-- The territory's journal. An act writes its entry in its own transaction (`seq`, `prev_hash`
-- and `hash` still empty); the sealer then gives entries their place in the chain, many per
-- transaction: `seq` without gaps, each hash covering the previous one. The département role
-- may insert, may fill those three columns once (column privilege + trigger), and may never
-- change, delete or truncate anything else. People are referenced by ids only, so erasing a
-- usager never rewrites the journal.
CREATE TABLE journal (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq             bigint UNIQUE,
    at              timestamptz NOT NULL,
    kind            text NOT NULL,
    structure_id    uuid,
    professional_id uuid,
    usager_id       uuid,
    mandate_id      uuid,
    details         text NOT NULL,
    prev_hash       bytea,
    hash            bytea,
    CHECK ((seq IS NULL) = (hash IS NULL) AND (seq IS NULL) = (prev_hash IS NULL))
);
CREATE INDEX journal_unsealed ON journal (id) WHERE seq IS NULL;
CREATE INDEX journal_usager ON journal (usager_id, id) WHERE usager_id IS NOT NULL;
CREATE INDEX journal_professional ON journal (professional_id, at) WHERE professional_id IS NOT NULL;
CREATE INDEX journal_mandate ON journal (mandate_id) WHERE mandate_id IS NOT NULL;

-- A sealed entry is final: whatever the privileges, its row never changes again.
CREATE FUNCTION journal_sealed_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % is sealed', OLD.seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER journal_sealed_is_final BEFORE UPDATE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_sealed_is_final();

-- Signed checkpoints sealing the chain up to an entry (ECDSA P-256 over the schema, sequence
-- and hash); anyone with the public key can check them.
CREATE TABLE journal_checkpoints (
    seq        bigint PRIMARY KEY,
    hash       bytea NOT NULL,
    at         timestamptz NOT NULL,
    key_id     text NOT NULL,
    signature  bytea NOT NULL
);
