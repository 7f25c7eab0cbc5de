-- Login hardening.
--
-- Wrong codes typed in a browser where the professional never completed a login are counted
-- apart, per e-mail address (its SHA-256), whether or not an account has that address: they
-- delay further attempts from unknown browsers, never lock the factor (knowing an aidant's
-- e-mail is not enough to lock them out), and cost the same for a known and an unknown address.
-- Wrong codes in a known browser or within a session keep the factor's lock after 10.
CREATE TABLE login_delays (
    email_hash    bytea PRIMARY KEY,
    failures      integer NOT NULL CHECK (failures > 0),
    blocked_until timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Browsers where a professional completed a login: the cookie's SHA-256 only. One browser may
-- be known for several professionals (a shared counter computer).
CREATE TABLE known_browsers (
    token_hash      bytea NOT NULL,
    professional_id uuid NOT NULL REFERENCES professionals (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_hash, professional_id)
);
CREATE INDEX known_browsers_seen ON known_browsers (last_seen_at);

-- A login link opens a session only in the browser that asked for it (SHA-256 of the cookie
-- set with the login form). Enrolment links are not bound: they are opened on the device
-- that will carry the authenticator app.
ALTER TABLE email_links ADD COLUMN browser_hash bytea;

-- Messages carrying a secret (login and enrolment links) keep their parameters sealed
-- (AES-256-GCM under a key derived from the seed key, the message id as associated data);
-- `payload` then holds no secret, and the sealed value is cleared once the message is sent.
ALTER TABLE outbox ADD COLUMN sealed_payload bytea;
