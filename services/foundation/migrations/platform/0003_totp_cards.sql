-- Physical TOTP cards: imported by the national team (serial number and seed, encrypted like
-- app seeds), then linked by a référent to one aidant. A card's clock drifts over the years:
-- `drift_steps` on the factor records the offset found by the explicit two-code
-- re-synchronisation, and is applied to every later check.

CREATE TABLE totp_cards (
    serial          text PRIMARY KEY CHECK (serial ~ '^[A-Za-z0-9-]{4,32}$'),
    seed_ciphertext bytea NOT NULL,
    seed_nonce      bytea NOT NULL,
    key_version     integer NOT NULL,
    step_seconds    integer NOT NULL DEFAULT 60 CHECK (step_seconds IN (30, 60)),
    imported_at     timestamptz NOT NULL DEFAULT now(),
    imported_by     uuid
);

ALTER TABLE second_factors ADD COLUMN drift_steps integer NOT NULL DEFAULT 0;
ALTER TABLE second_factors ADD COLUMN revoked_reason text;
-- A card serves one professional at a time.
CREATE UNIQUE INDEX second_factors_one_card_in_use ON second_factors (card_serial)
    WHERE card_serial IS NOT NULL AND revoked_at IS NULL;

-- Every service keeps the authorization guard in memory: any change of roles, or of an
-- account's activity, is announced so that each process reloads it at once.
CREATE FUNCTION notify_role_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('role_assignments', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER role_assignments_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON role_assignments
    FOR EACH STATEMENT EXECUTE FUNCTION notify_role_change();
CREATE TRIGGER professionals_changed AFTER UPDATE OF active ON professionals
    FOR EACH STATEMENT EXECUTE FUNCTION notify_role_change();
