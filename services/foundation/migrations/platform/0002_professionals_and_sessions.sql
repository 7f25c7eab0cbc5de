-- Professional identities, their roles, second factors, login links, sessions, rate limits and
-- the national security journal. Secrets are never stored in clear: TOTP seeds are encrypted
-- (AES-256-GCM, key version recorded), link tokens and session ids are stored as SHA-256.

CREATE TABLE professionals (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL CHECK (email = lower(email) AND position('@' in email) > 1),
    display_name        text NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 200),
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    deactivated_at      timestamptz,
    deactivation_reason text
);
CREATE UNIQUE INDEX professionals_email ON professionals (email);

-- Who holds which role where. A structure lives in a département schema: its code is kept here
-- so a structure domain can be resolved without searching every schema.
CREATE TABLE role_assignments (
    professional_id  uuid NOT NULL REFERENCES professionals (id),
    role             text NOT NULL CHECK (role IN ('aidant', 'referent', 'territory_admin',
                                                  'national_admin', 'trainer', 'auditor')),
    domain           text NOT NULL CHECK (domain = 'national' OR domain ~ '^(tenant|structure|organisation):[0-9a-f-]{36}$'),
    departement_code text REFERENCES departements (code),
    granted_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (professional_id, role, domain)
);

-- Second factors: an authenticator app or a physical TOTP card. `last_used_step` makes a code
-- single-use; `failures`, `blocked_until` and `locked` slow down, then stop, guessing.
CREATE TABLE second_factors (
    id               uuid PRIMARY KEY,
    professional_id  uuid NOT NULL REFERENCES professionals (id),
    kind             text NOT NULL CHECK (kind IN ('app', 'card')),
    card_serial      text,
    seed_ciphertext  bytea NOT NULL,
    seed_nonce       bytea NOT NULL,
    key_version      integer NOT NULL,
    step_seconds     integer NOT NULL DEFAULT 30 CHECK (step_seconds IN (30, 60)),
    confirmed_at     timestamptz,
    last_used_step   bigint NOT NULL DEFAULT 0,
    failures         integer NOT NULL DEFAULT 0,
    blocked_until    timestamptz,
    locked           boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
-- At most one factor in use per professional.
CREATE UNIQUE INDEX second_factors_one_in_use ON second_factors (professional_id)
    WHERE confirmed_at IS NOT NULL AND revoked_at IS NULL;

-- Single-use links sent by e-mail: login (5 minutes) and factor enrolment.
CREATE TABLE email_links (
    token_hash       bytea PRIMARY KEY,
    purpose          text NOT NULL CHECK (purpose IN ('login', 'enrolment')),
    professional_id  uuid NOT NULL REFERENCES professionals (id),
    totp_verified_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    consumed_at      timestamptz
);
CREATE INDEX email_links_expiry ON email_links (expires_at);

-- Server-side sessions. The cookie carries a random id; only its hash is here.
CREATE TABLE sessions (
    id_hash            bytea PRIMARY KEY,
    professional_id    uuid NOT NULL REFERENCES professionals (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT now(),
    totp_verified_at   timestamptz NOT NULL,
    current_structure  uuid,
    -- Set when the session was idle 15 minutes: the TOTP code is asked again before any
    -- mandate action.
    recheck_required   boolean NOT NULL DEFAULT false,
    ended_at           timestamptz,
    end_reason         text
);
CREATE INDEX sessions_professional ON sessions (professional_id) WHERE ended_at IS NULL;

-- Fixed-window counters for rate limits (per account, per client address). Keys are hashes.
CREATE TABLE rate_limits (
    key          text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL
);

-- National security journal: logins, failures and locks, factor changes, structure switches.
-- Append-only for the application role (grants) and hash-chained: each entry's hash covers the
-- previous hash and its own content, so an edit, deletion, insertion or reordering shows.
CREATE TABLE security_journal (
    seq             bigint PRIMARY KEY,
    at              timestamptz NOT NULL,
    kind            text NOT NULL,
    professional_id uuid,
    actor_id        uuid,
    -- JSON kept as the exact text that was hashed (jsonb would reorder its keys).
    details         text NOT NULL DEFAULT '{}',
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL
);
