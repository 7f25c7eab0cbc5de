-- Anomaly alerts (unusual volumes, uses outside opening hours, a person holding mandates with
-- many structures, many revocations in a day), raised by the job `anomaly_alerts` from the
-- aggregates and the journal: one per structure, rule, day and subject (a pseudonymous usager
-- id for the many-structures rule), so a rerun raises nothing twice. The référent and the
-- territory admin acknowledge them with a comment.
CREATE TABLE anomaly_alerts (
    id              uuid PRIMARY KEY,
    structure_id    uuid NOT NULL REFERENCES structures (id),
    tenant_id       uuid NOT NULL,
    rule            text NOT NULL CHECK (rule IN ('creations', 'uses', 'closed_hours',
                                                  'usager_structures', 'revocations')),
    day             date NOT NULL,
    subject         text NOT NULL DEFAULT '',
    figure          bigint NOT NULL,
    expected        bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    mailed_at       timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by uuid,
    comment         text CHECK (comment IS NULL OR length(btrim(comment)) BETWEEN 1 AND 2000),
    UNIQUE (structure_id, rule, day, subject)
);
CREATE INDEX anomaly_alerts_open ON anomaly_alerts (tenant_id, created_at DESC) WHERE acknowledged_at IS NULL;
CREATE INDEX journal_kind_at ON journal (kind, at);
