-- A FranceConnect login is bound to the browser that started it: the hash of a cookie's value
-- set there, checked on FranceConnect's return (franceconnect.md §A: state and nonce bound to
-- the browser session). Logins in progress, at most ten minutes old, are abandoned.
DELETE FROM usager_logins;
ALTER TABLE usager_logins
    ADD COLUMN browser_hash bytea NOT NULL CHECK (length(browser_hash) = 32);
