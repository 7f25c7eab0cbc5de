//! The outbox consumer's SQL: the claim, the outcomes and the give-back, for the national
//! table and for a territory's own.

/// The claim and the two outcomes, for the national table and for a territory's own.
pub(super) struct Sql {
    pub(super) claim: &'static str,
    pub(super) sent: &'static str,
    pub(super) failed: &'static str,
    pub(super) uncertain: &'static str,
    /// Claimed by this claim (its time, the same for its rows: never another replica's claim
    /// made since), never tried: back to the queue.
    pub(super) give_back: &'static str,
}

// The claim marks rows as being sent and is committed before anything is sent: a row stays
// marked if the worker dies before recording the outcome, and is never claimed again (it may
// have been delivered); an operator re-queues it after checking.
pub(super) const PLATFORM_SQL: Sql = Sql {
    claim: "UPDATE platform.outbox SET sending_started_at = now(), last_error = NULL
            WHERE id IN (SELECT id FROM platform.outbox
                         WHERE sent_at IS NULL AND sending_started_at IS NULL AND available_at <= now()
                           AND attempts < $1 AND channel <> 'letter'
                         ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING id, channel, recipient, template, payload, sealed_payload, sending_started_at",
    // A sealed secret (a login or enrolment link) is of no use once sent: it is cleared.
    sent: "UPDATE platform.outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL,
           sealed_payload = NULL WHERE id = $1 AND sending_started_at = $2 AND sent_at IS NULL",
    failed: "UPDATE platform.outbox SET sending_started_at = NULL,
             attempts = CASE WHEN $3 THEN $4 ELSE attempts + 1 END, last_error = $2,
             available_at = now() + make_interval(secs => least($5 * power(2, attempts), 3600))
             WHERE id = $1 AND sending_started_at = $6 RETURNING available_at",
    uncertain: "UPDATE platform.outbox SET last_error = $2 WHERE id = $1 AND sending_started_at = $3",
    give_back: "UPDATE platform.outbox SET sending_started_at = NULL
                WHERE id = ANY($1) AND sending_started_at = $2 AND sent_at IS NULL",
};

pub(super) const TENANT_SQL: Sql = Sql {
    claim: "UPDATE outbox SET sending_started_at = now(), last_error = NULL
            WHERE id IN (SELECT id FROM outbox
                         WHERE sent_at IS NULL AND sending_started_at IS NULL AND available_at <= now()
                           AND attempts < $1 AND channel <> 'letter'
                         ORDER BY available_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING id, channel, recipient, template, payload, NULL::bytea AS sealed_payload,
                      sending_started_at",
    sent: "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL
           WHERE id = $1 AND sending_started_at = $2 AND sent_at IS NULL",
    failed: "UPDATE outbox SET sending_started_at = NULL,
             attempts = CASE WHEN $3 THEN $4 ELSE attempts + 1 END, last_error = $2,
             available_at = now() + make_interval(secs => least($5 * power(2, attempts), 3600))
             WHERE id = $1 AND sending_started_at = $6 RETURNING available_at",
    uncertain: "UPDATE outbox SET last_error = $2 WHERE id = $1 AND sending_started_at = $3",
    give_back: "UPDATE outbox SET sending_started_at = NULL
                WHERE id = ANY($1) AND sending_started_at = $2 AND sent_at IS NULL",
};
