-- The usagers in creation order: the hourly completion of the platform's usager index reads
-- those created since its mark, a batch at a time (`(created_at, id) > (…)`).
CREATE INDEX usagers_created ON usagers (created_at, id);
