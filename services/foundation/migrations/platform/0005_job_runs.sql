-- Scheduled jobs (purges, reminders, digests) run once per period across every replica: a
-- replica starts a job only if it moves `last_started_at` forward past the period, which one
-- replica at a time can do (the row is the claim).
CREATE TABLE job_runs (
    name             text PRIMARY KEY,
    last_started_at  timestamptz NOT NULL,
    last_finished_at timestamptz,
    last_result      bigint,
    last_error       text
);
