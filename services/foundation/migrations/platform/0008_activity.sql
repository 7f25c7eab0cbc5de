-- When a professional last logged in (sessions are purged a day after they end, so they
-- cannot tell), and when they were last warned of their inactivity.
ALTER TABLE professionals
    ADD COLUMN last_login_at        timestamptz,
    ADD COLUMN inactivity_warned_at timestamptz;
