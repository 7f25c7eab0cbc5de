-- The chain columns (`seq`, `prev_hash`, `hash`) belong to the sealing function. On one
-- PostgreSQL, column privileges already say so; Citus keeps no column privileges on a
-- territory's worker (the migrator grants whole-table rights there), so these triggers say it
-- whoever writes: an entry is inserted without its chain columns, and the one update an entry
-- ever receives fills them, leaving what the entry says unchanged.
CREATE FUNCTION journal_inserted_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
        RAISE EXCEPTION 'a journal entry is inserted without its chain columns'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER journal_inserted_unsealed BEFORE INSERT ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_inserted_unsealed();

CREATE OR REPLACE FUNCTION journal_sealed_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % is sealed', OLD.seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.at, NEW.kind, NEW.structure_id, NEW.professional_id, NEW.usager_id,
        NEW.mandate_id, NEW.details)
       IS DISTINCT FROM
       (OLD.id, OLD.at, OLD.kind, OLD.structure_id, OLD.professional_id, OLD.usager_id,
        OLD.mandate_id, OLD.details) THEN
        RAISE EXCEPTION 'sealing a journal entry changes only its chain columns'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
