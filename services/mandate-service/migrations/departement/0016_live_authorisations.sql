-- The one definition of a live authorisation — not revoked, not superseded, not expired — that
-- every read asking "may this structure act for this person in this démarche now" goes through
-- (the list of a structure's usagers, the identity provider's choice, code and userinfo, the
-- verification page, the guard's for-whom check, the anomaly rules). Writes that end
-- authorisations at a given instant (supersession, revocation) say it on the table itself. The
-- planner inlines the view, so the partial index `authorisations_live` still serves it.
CREATE VIEW live_authorisations WITH (security_invoker = true) AS
    SELECT * FROM authorisations
    WHERE revoked_at IS NULL AND superseded_at IS NULL AND expires_at > now();
