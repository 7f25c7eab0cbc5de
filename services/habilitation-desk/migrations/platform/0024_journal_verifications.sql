-- Verifications of a territory's journal asked by an auditor from their pages (product.md §8):
-- they run in the background; the page shows their progress and outcome. Nothing personal: the
-- counts, the outcome in words, who asked.
CREATE TABLE journal_verifications (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    departement_code text NOT NULL REFERENCES departements (code),
    requested_by     uuid NOT NULL REFERENCES professionals (id),
    started_at       timestamptz NOT NULL DEFAULT now(),
    total            bigint NOT NULL CHECK (total >= 0),
    checked          bigint NOT NULL DEFAULT 0,
    finished_at      timestamptz,
    intact           boolean,
    outcome          text
);
CREATE INDEX journal_verifications_tenant ON journal_verifications (tenant_id, started_at DESC);
