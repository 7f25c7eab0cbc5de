-- A session ends when what it was opened on changes: the professional's factor is replaced,
-- unlinked or revoked (a stolen or lost device must not keep a session alive), or one of their
-- roles is withdrawn (a role withdrawn must not linger in an open session). Triggers, so that
-- every path — pages, tenant-admin, an operator's SQL — ends them the same way, in the same
-- transaction. A page that replaces the professional's own factor opens them a new session
-- right after, in that transaction.
CREATE FUNCTION end_sessions_on_factor_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE platform.sessions SET ended_at = now(), end_reason = 'factor_revoked'
    WHERE professional_id = NEW.professional_id AND ended_at IS NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER second_factors_revoked AFTER UPDATE OF revoked_at ON second_factors
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL AND OLD.confirmed_at IS NOT NULL)
    EXECUTE FUNCTION end_sessions_on_factor_revocation();

CREATE FUNCTION end_sessions_on_role_withdrawal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE platform.sessions SET ended_at = now(), end_reason = 'role_withdrawn'
    WHERE professional_id = OLD.professional_id AND ended_at IS NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER role_assignments_withdrawn AFTER DELETE ON role_assignments
    FOR EACH ROW EXECUTE FUNCTION end_sessions_on_role_withdrawal();
