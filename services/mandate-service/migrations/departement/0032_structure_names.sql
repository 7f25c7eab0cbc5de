-- The usagers each structure has held a mandate for, with their names, in name order per
-- structure. The identity provider's usager list (the first 50 of a structure, by name, with a
-- live authorisation for the démarches asked) used to walk the territory's usagers in name
-- order and keep those of the structure: in a large territory most of them belong to other
-- structures (Gironde at national volume: 1,715 usagers read for 51 shown). It now walks the
-- structure's own. Written with the structure's first authorisation for the person, renamed
-- with the person's identity, deleted with the person or with their last mandate there.
--
-- `categories` and `live_until` bound what can be live: every démarche ever authorised here
-- and the latest end of those authorisations. Both only grow (a revocation or a supersession
-- leaves them), so the walk skips, without looking at the authorisations, anyone who cannot
-- have a live authorisation for the démarches asked; whoever passes is still checked against
-- `live_authorisations`. Every write that makes an authorisation live widens them
-- (`mandates::usager::widen`).
CREATE TABLE structure_usagers (
    structure_id uuid NOT NULL REFERENCES structures (id),
    usager_id    uuid NOT NULL REFERENCES usagers (id) ON DELETE CASCADE,
    family_name  text NOT NULL,
    given_name   text NOT NULL,
    categories   text[] NOT NULL DEFAULT '{}',
    live_until   timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (structure_id, usager_id)
);
CREATE INDEX structure_usagers_name_order
    ON structure_usagers (structure_id, family_name, given_name, usager_id)
    INCLUDE (live_until, categories);
CREATE INDEX structure_usagers_usager ON structure_usagers (usager_id);

INSERT INTO structure_usagers
    (structure_id, usager_id, family_name, given_name, categories, live_until)
SELECT p.structure_id, p.usager_id, u.family_name, u.given_name, p.categories, p.live_until
FROM (SELECT structure_id, usager_id,
             coalesce(array_agg(DISTINCT category ORDER BY category)
                          FILTER (WHERE revoked_at IS NULL AND superseded_at IS NULL), '{}')
                 AS categories,
             coalesce(max(expires_at) FILTER (WHERE revoked_at IS NULL AND superseded_at IS NULL),
                      '-infinity') AS live_until
      FROM authorisations GROUP BY structure_id, usager_id) p
JOIN usagers u ON u.id = p.usager_id;
