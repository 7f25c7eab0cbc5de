-- One use of a mandate through the identity provider: the code issued when the aidant chose the
-- usager and the démarche, then the access token it was redeemed for. Codes and tokens are
-- stored only as SHA-256. Rows live a day (the journal keeps the use for good).
CREATE TABLE oidc_grants (
    id                 uuid PRIMARY KEY,
    code_hash          bytea NOT NULL UNIQUE,
    client_id          text NOT NULL,
    redirect_uri       text NOT NULL,
    nonce              text NOT NULL,
    scopes             text[] NOT NULL,
    code_challenge     text,
    structure_id       uuid NOT NULL REFERENCES structures (id),
    aidant_id          uuid NOT NULL,
    session_hash       bytea NOT NULL,
    auth_time          timestamptz NOT NULL,
    usager_id          uuid NOT NULL REFERENCES usagers (id),
    mandate_id         uuid NOT NULL REFERENCES mandates (id),
    authorisation_id   uuid NOT NULL REFERENCES authorisations (id),
    category           text NOT NULL,
    issued_at          timestamptz NOT NULL,
    code_expires_at    timestamptz NOT NULL,
    redeemed_at        timestamptz,
    access_token_hash  bytea UNIQUE,
    access_expires_at  timestamptz,
    -- A second redemption of the code, or a failed check, revokes everything the grant gave.
    revoked_at         timestamptz,
    -- The aidant's session for this flow ended through end_session.
    ended_at           timestamptz,
    CHECK (code_expires_at > issued_at),
    CHECK ((redeemed_at IS NULL) = (access_token_hash IS NULL))
);
CREATE INDEX oidc_grants_issued ON oidc_grants (issued_at);
