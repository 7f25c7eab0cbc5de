-- The usager's own space (/mes-mandats), signed in with FranceConnect.
--
-- Where a person holds mandates, without who they are: a keyed hash (HMAC-SHA-256, a key
-- derived from the platform's subject key) of their FranceConnect subject, and the départements
-- whose schemas hold a usager row for it. Nothing else: no name, no birth date, no subject.
CREATE TABLE usager_index (
    subject_hash     bytea NOT NULL CHECK (length(subject_hash) = 32),
    departement_code text NOT NULL REFERENCES departements (code),
    PRIMARY KEY (subject_hash, departement_code)
);

-- A FranceConnect login in progress: the state (hashed) and the nonce, single use, ten minutes.
CREATE TABLE usager_logins (
    state_hash bytea PRIMARY KEY CHECK (length(state_hash) = 32),
    nonce      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A usager session: the cookie's hash, the subject's keyed hash (to find the départements) and
-- the subject itself sealed with the platform's key (to find the usager rows there).
CREATE TABLE usager_sessions (
    id_hash        bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    subject_hash   bytea NOT NULL CHECK (length(subject_hash) = 32),
    subject_sealed bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    ended_at       timestamptz
);
