-- Internal callers reach only the départements they are granted (deny by default): a service
-- of one territory's integration cannot read or store documents of another. Codes as
-- `DepartementCode::as_str` writes them ('33', '2A', '971'); `tenant-admin internal caller add
-- --departements 33,2A` validates them.
--
-- Expand and backfill in one step: callers registered before this migration reached every
-- territory, and keep that reach (written out explicitly) so that no running integration
-- breaks; an operator narrows it by registering the caller again. New callers must name theirs.
ALTER TABLE internal_callers ADD COLUMN departements text[];
UPDATE internal_callers
SET departements = (SELECT array_agg(code ORDER BY code) FROM departements);
ALTER TABLE internal_callers
    ALTER COLUMN departements SET NOT NULL,
    ADD CONSTRAINT internal_callers_departements_not_empty CHECK (cardinality(departements) > 0);
