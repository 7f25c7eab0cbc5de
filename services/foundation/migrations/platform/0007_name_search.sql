-- Trigram matching, used by the territories' name searches (usagers of a structure). The
-- extension is database-wide; département schemas reference its operator class explicitly.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
