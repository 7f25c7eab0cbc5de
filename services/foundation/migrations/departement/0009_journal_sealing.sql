-- The chain columns (`seq`, `prev_hash`, `hash`) are written by this function only. It runs
-- with the rights of its owner, the database's `<prefix>_journal_sealer` role (NOLOGIN, set by
-- the migrator together with `search_path = <schema>, pg_temp`), which alone may update those
-- columns; the département role inserts entries without them (column-level INSERT) and may
-- only call this function. It chains, in arrival order, at most `batch` committed entries
-- whose chain columns are empty, and never touches a sealed entry (the trigger
-- `journal_sealed_is_final` refuses that whoever asks). The hash is the one of
-- `foundation::journal::entry_hash`: previous hash, seq and microseconds as 8 bytes big-endian,
-- then each field as a 4-byte length and its bytes (0xFFFFFFFF for an empty id).
CREATE FUNCTION journal_seal(batch integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
    entry     record;
    h         bytea;
    sealed    integer := 0;
BEGIN
    -- One sealer at a time per territory (the same lock whoever calls).
    PERFORM pg_advisory_xact_lock(hashtext('aidants-connect:journal-seal:' || current_schema()));
    SELECT seq, hash INTO last_seq, last_hash
        FROM journal WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := 0;
        last_hash := decode(repeat('00', 32), 'hex');
    END IF;
    FOR entry IN
        SELECT id, at, kind, structure_id, professional_id, usager_id, mandate_id, details
        FROM journal WHERE seq IS NULL ORDER BY id LIMIT greatest(batch, 0)
    LOOP
        last_seq := last_seq + 1;
        h := sha256(
            last_hash
            || int8send(last_seq)
            || int8send((extract(epoch FROM entry.at) * 1000000)::bigint)
            || int4send(octet_length(convert_to(entry.kind, 'UTF8'))) || convert_to(entry.kind, 'UTF8')
            || coalesce(int4send(16) || uuid_send(entry.structure_id), '\xffffffff'::bytea)
            || coalesce(int4send(16) || uuid_send(entry.professional_id), '\xffffffff'::bytea)
            || coalesce(int4send(16) || uuid_send(entry.usager_id), '\xffffffff'::bytea)
            || coalesce(int4send(16) || uuid_send(entry.mandate_id), '\xffffffff'::bytea)
            || int4send(octet_length(convert_to(entry.details, 'UTF8'))) || convert_to(entry.details, 'UTF8'));
        UPDATE journal SET seq = last_seq, prev_hash = last_hash, hash = h WHERE id = entry.id;
        last_hash := h;
        sealed := sealed + 1;
    END LOOP;
    RETURN sealed;
END $$;
REVOKE ALL ON FUNCTION journal_seal(integer) FROM PUBLIC;

-- An unchanged chain is signed again now and then, so that a verifier can demand a recent
-- checkpoint: several checkpoints may name the same entry.
ALTER TABLE journal_checkpoints DROP CONSTRAINT journal_checkpoints_pkey;
ALTER TABLE journal_checkpoints ADD PRIMARY KEY (seq, at);
