-- Per-tenant document keys (envelope encryption): each document has its own data key, wrapped
-- by its tenant's key; tenant keys are stored wrapped by the platform's master key (its version
-- recorded), so rotating the master key re-wraps rows here without touching documents.
CREATE TABLE tenant_keys (
    tenant_id      uuid NOT NULL,
    version        integer NOT NULL,
    wrapped_key    bytea NOT NULL,
    nonce          bytea NOT NULL,
    master_version integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);
