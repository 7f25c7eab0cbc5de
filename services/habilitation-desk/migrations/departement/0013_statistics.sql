-- Statistics (product.md §11), maintained from the journal by the job `statistics_refresh`: it
-- folds the sealed entries past the watermark, in the same transaction that moves the
-- watermark, so each entry is counted exactly once. Dashboards read these, never the journal.
CREATE TABLE stats_daily (
    day          date NOT NULL,
    structure_id uuid NOT NULL,
    -- The démarche category of a use; '' for creations and revocations (mandate-wide).
    category     text NOT NULL DEFAULT '',
    created      integer NOT NULL DEFAULT 0,
    used         integer NOT NULL DEFAULT 0,
    revoked      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, structure_id, category)
);
CREATE INDEX stats_daily_structure ON stats_daily (structure_id, day);
-- The people helped (a creation or a use) per month and structure, to count each once.
CREATE TABLE stats_people (
    month        date NOT NULL,
    structure_id uuid NOT NULL,
    usager_id    uuid NOT NULL,
    PRIMARY KEY (month, structure_id, usager_id)
);
CREATE TABLE stats_watermark (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL DEFAULT 0
);
INSERT INTO stats_watermark (seq) VALUES (0);
