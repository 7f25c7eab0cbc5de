-- The identity provider's usager list shows each person's name, usage name and birth date. They
-- are now carried here, with the name the list sorts by, and in the walk's index, so that a page
-- reads no row of `usagers`: its 51 probes of them were about half of the list's time at
-- national volume (load-tests/README.md, 2026-12-04). Kept with the person's identity wherever it
-- changes (`mandates::usager::follow_identity`).
ALTER TABLE structure_usagers
    ADD COLUMN preferred_username text,
    ADD COLUMN birthdate text NOT NULL DEFAULT '';
UPDATE structure_usagers su
   SET preferred_username = u.preferred_username, birthdate = u.birthdate
  FROM usagers u
 WHERE u.id = su.usager_id;
ALTER TABLE structure_usagers ALTER COLUMN birthdate DROP DEFAULT;
CREATE INDEX structure_usagers_list
    ON structure_usagers (structure_id, family_name, given_name, usager_id)
    INCLUDE (live_until, categories, preferred_username, birthdate);
DROP INDEX structure_usagers_name_order;
