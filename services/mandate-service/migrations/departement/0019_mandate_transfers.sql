-- Transfer of a mandate to another structure (product.md §6), possibly in another département:
-- the person consents again (at the counter or remotely) to a new mandate with the new
-- structure; the mandates they chose end when it starts. The new mandate's territory keeps the
-- list of mandates it takes over (`mandate_transfers`, written in the new mandate's own
-- transaction); each is then ended in its own territory (`ended_reason = 'transferred'`, with
-- where it went), and a job completes those a failure left pending.
ALTER TABLE mandate_drafts ADD COLUMN transfer boolean NOT NULL DEFAULT false;
ALTER TABLE remote_consents ADD COLUMN transfer boolean NOT NULL DEFAULT false;

ALTER TABLE mandates DROP CONSTRAINT mandates_ended_reason_check;
ALTER TABLE mandates ADD CONSTRAINT mandates_ended_reason_check
    CHECK (ended_reason IN ('revoked', 'superseded', 'transferred'));
ALTER TABLE mandates
    ADD COLUMN transferred_to_departement text,
    ADD COLUMN transferred_to_mandate uuid,
    ADD CHECK ((transferred_to_mandate IS NULL) = (transferred_to_departement IS NULL));

CREATE TABLE mandate_transfers (
    mandate_id       uuid NOT NULL REFERENCES mandates (id),
    from_departement text NOT NULL CHECK (from_departement ~ '^[0-9][0-9AB][0-9]?$'),
    from_mandate     uuid NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    -- 'ended': this transfer ended it; 'already_ended': it had ended before (revoked, expired).
    outcome          text CHECK (outcome IN ('ended', 'already_ended')),
    PRIMARY KEY (mandate_id, from_departement, from_mandate),
    CHECK ((completed_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX mandate_transfers_pending ON mandate_transfers (requested_at) WHERE completed_at IS NULL;
