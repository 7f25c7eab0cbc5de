-- A structure's issuer (the person who filed its habilitation request) registers its aidants on
-- training sessions too (product.md §4.3): who registered is then an issuer, not a
-- professional. At most one of the two is recorded.
ALTER TABLE training_registrations
    ADD COLUMN registered_by_issuer uuid REFERENCES issuers (id),
    ADD CONSTRAINT training_registrations_one_registrar
        CHECK (registered_by IS NULL OR registered_by_issuer IS NULL);
