-- Services allowed to call the internal document API (document-vault-bridge), each with its
-- own bearer token (only its SHA-256 is kept) and the document kinds it may store and read.
-- Managed with `tenant-admin internal caller add | list | disable`.
CREATE TABLE internal_callers (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{1,62}$'),
    token_sha256 bytea NOT NULL UNIQUE,
    kinds        text[] NOT NULL CHECK (cardinality(kinds) > 0),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
