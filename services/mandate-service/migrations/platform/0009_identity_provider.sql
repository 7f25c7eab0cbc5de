-- The platform as an OpenID Connect identity provider (FranceConnect calls it when an aidant
-- acts for a usager).

-- Clients allowed to call it: FranceConnect's integration and production platforms, and any
-- other registered with tenant-admin. A secret is stored only as its SHA-256 (it is 256 random
-- bits generated here, so a slow password hash would add nothing but latency); a
-- `private_key_jwt` client registers its public keys instead.
CREATE TABLE oidc_clients (
    client_id                 text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9._-]{8,100}$'),
    name                      text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    auth_method               text NOT NULL CHECK (auth_method IN
                                  ('client_secret_post', 'client_secret_basic', 'private_key_jwt')),
    secret_hash               bytea,
    jwks                      jsonb,
    redirect_uris             text[] NOT NULL CHECK (cardinality(redirect_uris) >= 1),
    post_logout_redirect_uris text[] NOT NULL DEFAULT '{}',
    signing_alg               text NOT NULL DEFAULT 'ES256' CHECK (signing_alg IN ('ES256', 'RS256')),
    active                    boolean NOT NULL DEFAULT true,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CHECK ((auth_method = 'private_key_jwt') = (jwks IS NOT NULL)),
    CHECK ((auth_method = 'private_key_jwt') OR secret_hash IS NOT NULL)
);

-- Signing keys. A key is published in the JWK set from its creation until `unpublished_at`,
-- and signs from `signs_from` until a newer key of the same algorithm signs: rotation publishes
-- the successor before it is used and keeps the predecessor published long after its last
-- token expired. Private keys are encrypted (AES-256-GCM, key version recorded).
CREATE TABLE oidc_signing_keys (
    kid             text PRIMARY KEY,
    alg             text NOT NULL CHECK (alg IN ('ES256', 'RS256')),
    public_jwk      jsonb NOT NULL,
    private_key     bytea NOT NULL,
    nonce           bytea NOT NULL,
    key_version     integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    signs_from      timestamptz NOT NULL,
    unpublished_at  timestamptz,
    CHECK (signs_from >= created_at),
    CHECK (unpublished_at IS NULL OR unpublished_at > signs_from)
);

-- `private_key_jwt` assertions already used (replay protection) until they expire.
CREATE TABLE oidc_assertions (
    client_id   text NOT NULL REFERENCES oidc_clients (client_id),
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oidc_assertions_expiry ON oidc_assertions (expires_at);
