-- Codes and access tokens now carry their grant's id (`{département}.{grant}.{random}`), and
-- the identity provider finds a grant by its primary key, then compares the hash of the whole
-- code or token with the one stored. The unique indexes on those hashes are no longer read;
-- without them, and with room left in each page, the redemption's update (which writes the
-- access token's hash) is a heap-only update: no new entry in any of the grant's indexes.
--
-- A grant and a receipt no longer declare their structure as a foreign key. Each insert of a
-- row referencing a structure locked that structure's row (`FOR KEY SHARE`) until its commit;
-- every flow of a structure locks the same row, so concurrent flows made PostgreSQL build a
-- new multixact for nearly every insert (about 127,000 in one `bench-idp` run). Both rows are
-- written only from rows read in the same statement (the grant from a live authorisation of
-- the structure, the receipt from the claimed grant or the act's own structure), and a
-- structure is never deleted, only closed. Measured with pgbench on the redemption's
-- statement, 16 clients: 4,353 transactions/s with the foreign key, 5,122 without (means of
-- four runs each); then 5,239 with the hash indexes and 7,409 without (three runs each).
ALTER TABLE oidc_grants DROP CONSTRAINT oidc_grants_code_hash_key;
ALTER TABLE oidc_grants DROP CONSTRAINT oidc_grants_access_token_hash_key;
ALTER TABLE oidc_grants DROP CONSTRAINT oidc_grants_structure_id_fkey;
ALTER TABLE oidc_grants SET (fillfactor = 80);
ALTER TABLE outbox DROP CONSTRAINT outbox_structure_id_fkey;
