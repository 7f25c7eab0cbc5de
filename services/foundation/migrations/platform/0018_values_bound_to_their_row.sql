-- Secrets encrypted at rest are bound to their row: the row's id is the AES-GCM associated
-- data, so a ciphertext copied into another row (another professional's factor, another
-- tenant's key) no longer decrypts. Rows written before stay readable unbound (`aad_bound`
-- false) until they are re-wrapped (`tenant-admin keys rotate-totp` binds every seed).
ALTER TABLE second_factors ADD COLUMN aad_bound boolean NOT NULL DEFAULT false;
ALTER TABLE totp_cards ADD COLUMN aad_bound boolean NOT NULL DEFAULT false;
ALTER TABLE oidc_signing_keys ADD COLUMN aad_bound boolean NOT NULL DEFAULT false;
ALTER TABLE tenant_keys ADD COLUMN aad_bound boolean NOT NULL DEFAULT false;
