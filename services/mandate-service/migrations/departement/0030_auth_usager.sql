-- Every authorisation of a person (live or not), in a structure or anywhere in the territory:
-- the identity provider's démarches page reads them all for the chosen person, and without
-- this index PostgreSQL read the whole table (Gironde seeded at national volume: 490,000
-- authorisations, 40 ms alone and 200–270 ms under 16 desks).
CREATE INDEX authorisations_usager ON authorisations (usager_id, structure_id);
