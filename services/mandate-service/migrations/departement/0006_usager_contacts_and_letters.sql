-- How a usager is reached for receipts (product.md §9): e-mail (from FranceConnect), else a
-- mobile phone (SMS), else a postal address (a printed letter). Phone and address are typed by
-- the aidant with the usager's agreement; both optional.
ALTER TABLE usagers ADD COLUMN phone text CHECK (phone ~ '^\+[1-9][0-9]{7,14}$');
ALTER TABLE usagers ADD COLUMN postal_address text
    CHECK (length(postal_address) BETWEEN 1 AND 400);

-- Letters wait in the outbox until their structure's next batch: one PDF, one page per letter,
-- stored in the document vault (the structure's tenant key), which the structure prints and
-- posts. A letter belongs to the structure that holds the mandate.
CREATE TABLE letter_batches (
    id           uuid PRIMARY KEY,
    structure_id uuid NOT NULL REFERENCES structures (id),
    document_id  uuid NOT NULL REFERENCES documents (id),
    letter_count integer NOT NULL CHECK (letter_count > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX letter_batches_structure ON letter_batches (structure_id, created_at);

ALTER TABLE outbox ADD COLUMN structure_id uuid REFERENCES structures (id);
ALTER TABLE outbox ADD COLUMN letter_batch_id uuid REFERENCES letter_batches (id);
ALTER TABLE outbox ADD CONSTRAINT outbox_letter_structure
    CHECK (channel <> 'letter' OR structure_id IS NOT NULL);
CREATE INDEX outbox_letters_pending ON outbox (structure_id)
    WHERE channel = 'letter' AND sent_at IS NULL;
