-- What a territory's rights looked like right after the migrator last swept them: a digest of
-- the sweep's statements and of the catalog's privileges on every object of the schema. A run
-- that finds the same digest skips the sweep (tenancy/rights.rs); NULL means "sweep".
ALTER TABLE platform.departement_schemas ADD COLUMN rights_digest bytea;
