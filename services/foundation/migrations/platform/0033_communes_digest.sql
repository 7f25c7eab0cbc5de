-- The digest of the reference communes the migrator last loaded for a territory. A run that
-- finds the same digest and as many rows skips the load (tenancy/communes.rs); NULL means
-- "load".
ALTER TABLE platform.departement_schemas ADD COLUMN communes_digest bytea;
