-- Judicial measures at a guardian service's scale (issue 18 §1–3): people identified by the
-- civil-status data of the court decision, the service's own case number (what makes a
-- re-import of the same file idempotent), the delegate holding each measure, the alerts sent
-- before a measure ends, and the imports with their progress and line report.

-- How a usager was identified. A person identified by the decision's civil-status data has no
-- FranceConnect subject: `fc_sub` then holds an internal subject (`etat-civil:` and a random
-- uuid) that FranceConnect never asserts, so the usager space and the cross-territory index
-- never match it, while the identity provider's pairwise subjects still derive from it.
ALTER TABLE usagers ADD COLUMN identified_by text NOT NULL DEFAULT 'franceconnect'
    CHECK (identified_by IN ('franceconnect', 'civil_status'));

ALTER TABLE judicial_measures ADD COLUMN structure_id uuid REFERENCES structures (id);
UPDATE judicial_measures j SET structure_id = m.structure_id FROM mandates m WHERE m.id = j.mandate_id;
ALTER TABLE judicial_measures ALTER COLUMN structure_id SET NOT NULL;
ALTER TABLE judicial_measures ADD COLUMN case_number text
    CHECK (case_number IS NULL OR length(btrim(case_number)) BETWEEN 1 AND 60);
-- The delegate (an aidant of the service) who holds the measure; NULL while unassigned.
ALTER TABLE judicial_measures ADD COLUMN delegate_id uuid;
ALTER TABLE judicial_measures ADD COLUMN categories text[];
UPDATE judicial_measures j SET categories = ARRAY(SELECT a.category FROM authorisations a
    WHERE a.mandate_id = j.mandate_id ORDER BY a.category);
ALTER TABLE judicial_measures ALTER COLUMN categories SET NOT NULL;
CREATE UNIQUE INDEX judicial_measures_case ON judicial_measures (structure_id, case_number)
    WHERE case_number IS NOT NULL;
CREATE INDEX judicial_measures_delegate ON judicial_measures (structure_id, delegate_id, ends);
CREATE INDEX judicial_measures_ends ON judicial_measures (ends);

-- An alert sent about a measure: 90, 30 or 7 days before its end, or at its renewal date.
-- `due` is the date the alert is about (the end or the renewal date): a measure whose end the
-- court moves gets its alerts again for the new date, and never twice for one date.
CREATE TABLE judicial_alerts (
    mandate_id uuid NOT NULL REFERENCES mandates (id),
    alert      text NOT NULL CHECK (alert IN ('90', '30', '7', 'renewal')),
    due        date NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mandate_id, alert, due)
);

-- A CSV import of measures: its progress while it runs, then its line report. The file itself
-- is not kept (only its hash); the report holds case numbers and reasons, no civil status.
CREATE TABLE measure_imports (
    id           uuid PRIMARY KEY,
    structure_id uuid NOT NULL REFERENCES structures (id),
    started_by   uuid NOT NULL,
    file_name    text NOT NULL,
    file_sha256  bytea NOT NULL,
    total        integer NOT NULL DEFAULT 0,
    done         integer NOT NULL DEFAULT 0,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    report       jsonb,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX measure_imports_structure ON measure_imports (structure_id, created_at DESC);
