-- National and public statistics (product.md §11): each territory's monthly figures, copied by
-- the job `statistics_refresh` from the territory's own aggregates, so that the national and
-- public dashboards read one small table, whatever the number of mandates.
CREATE TABLE stats_territory_months (
    departement_code text NOT NULL REFERENCES departements (code),
    month            date NOT NULL,
    category         text NOT NULL DEFAULT '',
    created          bigint NOT NULL DEFAULT 0,
    used             bigint NOT NULL DEFAULT 0,
    revoked          bigint NOT NULL DEFAULT 0,
    -- People helped, counted once per structure (on rows with category '').
    people           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (departement_code, month, category)
);
-- The state of each territory's habilitation at the job's last run, per month.
CREATE TABLE stats_territory_snapshots (
    departement_code     text NOT NULL REFERENCES departements (code),
    month                date NOT NULL,
    structures           bigint NOT NULL,
    aidants              bigint NOT NULL,
    requests_in_progress bigint NOT NULL,
    files_in_progress    bigint NOT NULL,
    PRIMARY KEY (departement_code, month)
);
