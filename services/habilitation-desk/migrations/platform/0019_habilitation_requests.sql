-- The front door of the dispositif (product.md §3, §4.1–4.2): communes of the reference data,
-- issuers ("demandeurs", no account, e-mail verified by a link), where each structure request
-- lives, rollout waves, and the review role a national admin may delegate to a territory admin.

-- Communes by INSEE code (COG), loaded per département when its schema is provisioned, from
-- services/foundation/reference/communes.tsv. Municipal arrondissements (Paris, Lyon,
-- Marseille) name their commune in `parent_code`.
CREATE TABLE communes (
    code             text PRIMARY KEY CHECK (code ~ '^[0-9][0-9AB][0-9]{3}$'),
    name             text NOT NULL,
    departement_code text NOT NULL REFERENCES departements (code),
    postal_codes     text[] NOT NULL DEFAULT '{}',
    population       integer,
    parent_code      text
);
CREATE INDEX communes_departement ON communes (departement_code);

-- People filing requests. Nothing but a verified address: no password, no factor.
CREATE TABLE issuers (
    id          uuid PRIMARY KEY,
    email       text NOT NULL UNIQUE CHECK (email = lower(email) AND position('@' in email) > 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz
);

-- Single-use links proving an issuer's address (24 hours; SHA-256 of the token only).
CREATE TABLE issuer_links (
    token_hash  bytea PRIMARY KEY,
    issuer_id   uuid NOT NULL REFERENCES issuers (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz
);
CREATE INDEX issuer_links_expiry ON issuer_links (expires_at);

-- An issuer's browser session, opened by a link (SHA-256 of the cookie only).
CREATE TABLE issuer_sessions (
    id_hash    bytea PRIMARY KEY,
    issuer_id  uuid NOT NULL REFERENCES issuers (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz
);
CREATE INDEX issuer_sessions_issuer ON issuer_sessions (issuer_id) WHERE ended_at IS NULL;

-- Where a request lives. Written once, before the request itself (an entry whose request was
-- never written is harmless and purged); the request's content and state stay in its territory.
CREATE TABLE request_index (
    request_id       uuid PRIMARY KEY,
    reference        text NOT NULL UNIQUE,
    departement_code text NOT NULL REFERENCES departements (code),
    issuer_id        uuid NOT NULL REFERENCES issuers (id),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_index_issuer ON request_index (issuer_id);
CREATE INDEX request_index_departement ON request_index (departement_code);

-- Rollout waves: départements grouped and opened in turn. A département belongs to at most one
-- wave; one that belongs to none is not open.
CREATE TABLE rollout_waves (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    opens_on   date NOT NULL,
    opened_at  timestamptz,
    opened_by  uuid REFERENCES professionals (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by uuid REFERENCES professionals (id)
);
CREATE TABLE rollout_wave_departements (
    departement_code text PRIMARY KEY REFERENCES departements (code),
    wave_id          uuid NOT NULL REFERENCES rollout_waves (id)
);
CREATE INDEX rollout_wave_departements_wave ON rollout_wave_departements (wave_id);

-- Review delegated by the national team to a territory admin of a département council: the
-- role `reviewer` in that council's tenant domain.
ALTER TABLE role_assignments DROP CONSTRAINT role_assignments_role_check;
ALTER TABLE role_assignments ADD CONSTRAINT role_assignments_role_check
    CHECK (role IN ('aidant', 'referent', 'territory_admin', 'national_admin', 'trainer',
                    'auditor', 'reviewer'));

-- The platform part of each acceptance (the référent's account, role and mail), written once:
-- a retried or concurrent completion finds the row and sends nothing twice.
CREATE TABLE request_acceptances (
    request_id       uuid PRIMARY KEY,
    departement_code text NOT NULL REFERENCES departements (code),
    professional_id  uuid REFERENCES professionals (id),
    done_at          timestamptz NOT NULL DEFAULT now()
);
