-- Documents of the territory (attestations, court decisions, structure documents): metadata
-- here, encrypted content in the object store under "<tenant>/<id>". Nothing is readable
-- without the tenant key; rows are kept (deleted_at set) after a purge so that the journal's
-- references stay meaningful.
CREATE TABLE documents (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    kind            text NOT NULL,
    content_type    text NOT NULL CHECK (content_type IN ('application/pdf', 'image/png', 'image/jpeg')),
    size_bytes      bigint NOT NULL CHECK (size_bytes > 0),
    sha256          bytea NOT NULL,
    object_key      text NOT NULL UNIQUE,
    key_version     integer NOT NULL,
    wrapped_dek     bytea NOT NULL,
    dek_nonce       bytea NOT NULL,
    content_nonce   bytea NOT NULL,
    retention_class text NOT NULL,
    retain_until    timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX documents_due ON documents (retain_until) WHERE deleted_at IS NULL;
