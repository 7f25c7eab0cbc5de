-- The usagers each structure has held a mandate for, with their names, in name order per
-- structure. The identity provider's usager list (the first 50 of a structure, by name, with a
-- live authorisation for the démarches asked) used to walk the territory's usagers in name
-- order and keep those of the structure: in a large territory most of them belong to other
-- structures (Gironde at national volume: 1,715 usagers read for 51 shown). It now walks the
-- structure's own. Written with the structure's first authorisation for the person, renamed
-- with the person's identity, deleted with the person or with their last mandate there.
CREATE TABLE structure_usagers (
    structure_id uuid NOT NULL REFERENCES structures (id),
    usager_id    uuid NOT NULL REFERENCES usagers (id) ON DELETE CASCADE,
    family_name  text NOT NULL,
    given_name   text NOT NULL,
    PRIMARY KEY (structure_id, usager_id)
);
CREATE INDEX structure_usagers_name_order
    ON structure_usagers (structure_id, family_name, given_name, usager_id);
CREATE INDEX structure_usagers_usager ON structure_usagers (usager_id);

INSERT INTO structure_usagers (structure_id, usager_id, family_name, given_name)
SELECT p.structure_id, p.usager_id, u.family_name, u.given_name
FROM (SELECT DISTINCT structure_id, usager_id FROM authorisations) p
JOIN usagers u ON u.id = p.usager_id;
