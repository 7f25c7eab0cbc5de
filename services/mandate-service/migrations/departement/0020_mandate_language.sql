-- The language the mandate was explained in (explanation::LANGUAGES): the attestation carries
-- the explanation in it beside French, also when it is produced again later.
ALTER TABLE mandates ADD COLUMN language text NOT NULL DEFAULT 'fr';
