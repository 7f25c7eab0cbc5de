-- The national team's weekly digest of new structure requests: one row per week (its Monday,
-- Paris time), written in the same transaction as the digest's messages, so a week is digested
-- once whatever the number of replicas or runs. Each digest covers the requests first submitted
-- after the previous one's end and up to its own, so none is missed or counted twice.
CREATE TABLE request_digests (
    week_start    date PRIMARY KEY,
    covered_from  timestamptz NOT NULL,
    covered_until timestamptz NOT NULL CHECK (covered_until > covered_from),
    request_count integer NOT NULL CHECK (request_count >= 0),
    recipients    integer NOT NULL CHECK (recipients >= 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
