-- Each identity-provider client may ask only the scopes and receive only the démarche
-- categories it was registered with (`tenant-admin idp client add --scopes … --categories …`).
-- Clients registered before this migration keep what they could ask until now (every scope,
-- every category: the defaults below backfill them); the defaults are then dropped, so that
-- every later registration states both lists.
ALTER TABLE oidc_clients
    ADD COLUMN allowed_scopes text[] NOT NULL DEFAULT ARRAY[
        'openid', 'profile', 'email', 'birth', 'identite_pivot', 'given_name', 'family_name',
        'birthdate', 'gender', 'birthplace', 'birthcountry', 'preferred_username'],
    ADD COLUMN allowed_categories text[] NOT NULL DEFAULT ARRAY[
        'papiers', 'famille', 'social', 'travail', 'logement', 'transports', 'argent', 'justice',
        'etranger', 'loisirs'];

ALTER TABLE oidc_clients
    ALTER COLUMN allowed_scopes DROP DEFAULT,
    ALTER COLUMN allowed_categories DROP DEFAULT,
    ADD CONSTRAINT oidc_clients_openid_allowed CHECK ('openid' = ANY (allowed_scopes)),
    ADD CONSTRAINT oidc_clients_some_category CHECK (cardinality(allowed_categories) >= 1);
