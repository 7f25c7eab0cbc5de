-- The whole structure request (product.md §4.1–4.2): the structure as described by its issuer,
-- the référent, the aidants to habilitate, the commitments (with their text version and time),
-- the review thread, and what acceptance creates — the structure and one habilitation file per
-- aidant.

ALTER TABLE structure_requests
    ADD COLUMN issuer_id              uuid,
    ADD COLUMN address                text NOT NULL DEFAULT '',
    ADD COLUMN postal_code            text CHECK (postal_code ~ '^[0-9]{5}$'),
    ADD COLUMN france_services        boolean NOT NULL DEFAULT false,
    ADD COLUMN france_services_number text,
    ADD COLUMN mission                text NOT NULL DEFAULT '',
    ADD COLUMN opening_hours          text NOT NULL DEFAULT '',
    ADD COLUMN referent_first_name    text,
    ADD COLUMN referent_last_name     text,
    ADD COLUMN referent_email         text CHECK (referent_email = lower(referent_email)),
    ADD COLUMN referent_phone         text,
    ADD COLUMN referent_is_aidant     boolean,
    ADD COLUMN updated_at             timestamptz NOT NULL DEFAULT now(),
    -- The last submission (first_submitted_at keeps the first).
    ADD COLUMN submitted_at           timestamptz,
    ADD COLUMN released_at            timestamptz,
    ADD COLUMN decided_at             timestamptz,
    ADD COLUMN decided_by             uuid,
    ADD COLUMN refusal_reason         text,
    ADD COLUMN withdrawn_at           timestamptz,
    ADD COLUMN structure_id           uuid,
    -- The platform part of an acceptance (the référent's account and role, the activation
    -- link) is done after the territory's transaction and marked here; a job finishes it.
    ADD COLUMN referent_id            uuid,
    ADD COLUMN accounts_done_at       timestamptz;

ALTER TABLE structure_requests DROP CONSTRAINT structure_requests_status_check;
ALTER TABLE structure_requests DROP CONSTRAINT structure_requests_check;
ALTER TABLE structure_requests ADD CONSTRAINT structure_requests_status_check
    CHECK (status IN ('draft', 'waiting', 'submitted', 'changes_requested', 'amended',
                      'accepted', 'refused', 'withdrawn'));
-- Submitted once means first_submitted_at is set for good; a draft never has it.
ALTER TABLE structure_requests ADD CONSTRAINT structure_requests_first_submission
    CHECK (CASE status WHEN 'draft' THEN first_submitted_at IS NULL
                       WHEN 'withdrawn' THEN true
                       ELSE first_submitted_at IS NOT NULL END);
ALTER TABLE structure_requests ADD CONSTRAINT structure_requests_acceptance
    CHECK ((status = 'accepted') = (structure_id IS NOT NULL));
ALTER TABLE structure_requests ADD CONSTRAINT structure_requests_refusal
    CHECK (status <> 'refused' OR length(btrim(refusal_reason)) > 0);
-- One open request per SIRET in the territory.
CREATE UNIQUE INDEX structure_requests_open_siret ON structure_requests (siret)
    WHERE status NOT IN ('accepted', 'refused', 'withdrawn');
CREATE INDEX structure_requests_status ON structure_requests (status, submitted_at);
CREATE INDEX structure_requests_pending_accounts ON structure_requests (decided_at)
    WHERE status = 'accepted' AND accounts_done_at IS NULL;

-- The aidants a request asks to habilitate: professionals only (the application refuses
-- volunteers, civic-service volunteers, interns and elected officials with the reason).
CREATE TABLE request_aidants (
    id          uuid PRIMARY KEY,
    request_id  uuid NOT NULL REFERENCES structure_requests (id),
    first_name  text NOT NULL CHECK (length(btrim(first_name)) BETWEEN 1 AND 100),
    last_name   text NOT NULL CHECK (length(btrim(last_name)) BETWEEN 1 AND 100),
    email       text NOT NULL CHECK (email = lower(email) AND position('@' in email) > 1),
    profession  text NOT NULL CHECK (length(btrim(profession)) BETWEEN 1 AND 150),
    employment  text NOT NULL CHECK (employment IN ('public_agent', 'employee', 'conseiller_numerique')),
    employer    text NOT NULL CHECK (length(btrim(employer)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (request_id, email)
);

-- Commitments accepted by the issuer, each with the version of the text they read.
CREATE TABLE request_commitments (
    request_id   uuid NOT NULL REFERENCES structure_requests (id),
    code         text NOT NULL,
    text_version text NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, code)
);

-- The thread between the issuer and the reviewers.
CREATE TABLE request_messages (
    id              uuid PRIMARY KEY,
    request_id      uuid NOT NULL REFERENCES structure_requests (id),
    author          text NOT NULL CHECK (author IN ('issuer', 'reviewer')),
    professional_id uuid,
    body            text NOT NULL CHECK (length(btrim(body)) BETWEEN 1 AND 5000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((author = 'reviewer') = (professional_id IS NOT NULL))
);
CREATE INDEX request_messages_request ON request_messages (request_id, created_at);

-- What a structure said of itself in its request.
ALTER TABLE structures
    ADD COLUMN postal_code            text,
    ADD COLUMN france_services_number text,
    ADD COLUMN mission                text NOT NULL DEFAULT '',
    ADD COLUMN opening_hours          text NOT NULL DEFAULT '',
    ADD COLUMN request_id             uuid;
CREATE UNIQUE INDEX structures_one_per_request ON structures (request_id) WHERE request_id IS NOT NULL;

-- One habilitation file per aidant to habilitate, from acceptance to activation (the training,
-- Pix and charter steps fill it).
CREATE TABLE habilitation_files (
    id              uuid PRIMARY KEY,
    structure_id    uuid NOT NULL REFERENCES structures (id),
    request_id      uuid REFERENCES structure_requests (id),
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text NOT NULL CHECK (email = lower(email)),
    profession      text NOT NULL,
    employment      text NOT NULL,
    employer        text NOT NULL,
    state           text NOT NULL DEFAULT 'to_train'
                    CHECK (state IN ('to_train', 'registered', 'trained', 'pix', 'charter',
                                     'active', 'withdrawn')),
    professional_id uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (structure_id, email)
);
