-- Judicial protection measures (product.md §6, issue 18 §1). A structure flagged as a guardian
-- service (a service mandataire judiciaire, a family tutor's association) records the measure a
-- court decided: a mandate like the others, marked judicial, whose period is the decision's
-- (not one of the four durations) and whose démarches are those the decision allows. The
-- measure's details live beside the mandate; while the delegate identifies the person, they
-- wait in the draft.
ALTER TABLE structures ADD COLUMN guardian_service boolean NOT NULL DEFAULT false;

ALTER TABLE mandates DROP CONSTRAINT mandates_duration_days_check;
ALTER TABLE mandates ADD CONSTRAINT mandates_duration_days_check
    CHECK (duration_days BETWEEN 1 AND 36525);
ALTER TABLE mandate_drafts DROP CONSTRAINT mandate_drafts_duration_days_check;
ALTER TABLE mandate_drafts ADD CONSTRAINT mandate_drafts_duration_days_check
    CHECK (duration_days BETWEEN 1 AND 36525);
ALTER TABLE mandate_drafts ADD COLUMN judicial jsonb;

CREATE TABLE judicial_measures (
    mandate_id         uuid PRIMARY KEY REFERENCES mandates (id),
    kind               text NOT NULL CHECK (kind IN ('tutelle', 'curatelle_simple',
                           'curatelle_renforcee', 'habilitation_familiale',
                           'sauvegarde_de_justice', 'mandat_protection_future')),
    court              text NOT NULL CHECK (length(btrim(court)) BETWEEN 1 AND 200),
    decision_date      date NOT NULL,
    decision_reference text NOT NULL CHECK (length(btrim(decision_reference)) BETWEEN 1 AND 100),
    starts             date NOT NULL,
    ends               date NOT NULL CHECK (ends > starts),
    renewal_date       date,
    -- How the protected person was identified: FranceConnect, or the civil-status data of the
    -- court decision (marked as such).
    identified_by      text NOT NULL CHECK (identified_by IN ('franceconnect', 'civil_status')),
    decision_document_id uuid
);
