-- Idempotency keys of acts (issue 21 §1): a form carries a random key; the act records its
-- hash, in its own transaction, with its outcome. A retry of the same form (a network error,
-- a double click, the browser's resubmission) finds the key and answers the first outcome
-- instead of acting again. Kept a day.
CREATE TABLE act_keys (
    key_hash    bytea PRIMARY KEY,
    act         text NOT NULL CHECK (act IN ('revocation')),
    mandate_id  uuid NOT NULL,
    outcome     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX act_keys_created ON act_keys (created_at);
