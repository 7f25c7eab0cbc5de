-- Signed checkpoints of the security journal, as the territories' journals have: the same
-- ECDSA P-256 key signs (seq, hash, time) of the chain's last entry, and auditors keep the
-- exported list. A chain that did not grow is signed again now and then (freshness), so the
-- key is (seq, at), not seq alone.
CREATE TABLE security_journal_checkpoints (
    seq        bigint NOT NULL,
    hash       bytea NOT NULL,
    at         timestamptz NOT NULL,
    key_id     text NOT NULL,
    signature  bytea NOT NULL,
    PRIMARY KEY (seq, at)
);

-- Temporary objects are for nobody but the owner: a temporary table or view named like a
-- territory table would otherwise shadow it for the rest of a session (the département roles
-- and the application role log in; neither needs one).
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;
