-- What the person chose in their own space (/mes-mandats): how receipts reach them, and the
-- contact they gave themselves, which takes precedence over what a structure typed at the
-- counter (usager_contacts) and over FranceConnect's e-mail.
ALTER TABLE usagers
    ADD COLUMN receipts text NOT NULL DEFAULT 'auto'
        CHECK (receipts IN ('auto', 'email', 'sms', 'letter', 'none')),
    ADD COLUMN own_email text CHECK (own_email IS NULL OR length(own_email) BETWEEN 3 AND 254),
    ADD COLUMN own_phone text CHECK (own_phone IS NULL OR own_phone ~ '^\+[1-9][0-9]{7,14}$'),
    ADD COLUMN own_postal_address text
        CHECK (own_postal_address IS NULL OR length(own_postal_address) BETWEEN 3 AND 300);
