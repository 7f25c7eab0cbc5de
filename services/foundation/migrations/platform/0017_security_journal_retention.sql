-- The security journal is kept one year (product.md §12). Entries go only up to a signed
-- checkpoint older than a year, whose own entry stays: the chain then starts at that entry,
-- whose hash the checkpoint's signature vouches for, so what remains still verifies and
-- nothing newer than a year can go. The application role cannot delete from the journal: this
-- function (SECURITY DEFINER, owned by the migrations' role) is the only way, it takes no
-- parameter (nobody chooses the cutoff), and it removes the checkpoints before the new start.
CREATE FUNCTION security_journal_purge() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = platform, pg_temp AS $$
DECLARE
    anchor bigint;
    removed bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('aidants-connect:security-journal'));
    SELECT max(c.seq) INTO anchor
    FROM security_journal_checkpoints c
    JOIN security_journal j ON j.seq = c.seq AND j.hash = c.hash
    WHERE j.at < now() - interval '1 year';
    IF anchor IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM security_journal WHERE seq < anchor;
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM security_journal_checkpoints WHERE seq < anchor;
    RETURN removed;
END
$$;
