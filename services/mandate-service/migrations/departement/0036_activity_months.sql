-- An aidant's uses of mandates by démarche, for each month that is over, as the activity page
-- counted them once from the journal: an entry is stamped when it is written and the journal is
-- append-only, so an ended month's figures never change. The page reads the current month from
-- the journal each time and the eleven before it from here. Counts only, no person.
CREATE TABLE activity_months (
    professional_id uuid NOT NULL,
    month           timestamptz NOT NULL,
    uses            jsonb NOT NULL,
    PRIMARY KEY (professional_id, month)
);
