-- Structures' habilitation requests (product.md §4.1), filed on the public desk by an issuer
-- with no account and kept in the territory of the structure's commune. This first version holds
-- what the national team's weekly digest reads (who asks, for which structure, where, when it
-- was first submitted); the request flow adds the rest of the form (référent, aidants,
-- commitments) and the review thread in later migrations.
CREATE TABLE structure_requests (
    id                 uuid PRIMARY KEY,
    reference          text NOT NULL UNIQUE CHECK (reference ~ '^[A-Z0-9-]{6,40}$'),
    structure_name     text NOT NULL CHECK (length(btrim(structure_name)) BETWEEN 1 AND 200),
    structure_kind     text NOT NULL CHECK (length(btrim(structure_kind)) BETWEEN 1 AND 100),
    siret              text NOT NULL CHECK (siret ~ '^[0-9]{14}$'),
    commune_code       text NOT NULL CHECK (commune_code ~ '^[0-9][0-9AB][0-9]{3}$'),
    issuer_email       text NOT NULL CHECK (issuer_email LIKE '%_@_%'),
    status             text NOT NULL DEFAULT 'draft'
                       CHECK (status IN ('draft', 'submitted', 'changes_requested', 'accepted', 'refused')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Set once, at the first submission: a request amended and resubmitted is not new again.
    first_submitted_at timestamptz,
    CHECK ((status = 'draft') = (first_submitted_at IS NULL))
);
CREATE INDEX structure_requests_first_submitted ON structure_requests (first_submitted_at)
    WHERE first_submitted_at IS NOT NULL;
