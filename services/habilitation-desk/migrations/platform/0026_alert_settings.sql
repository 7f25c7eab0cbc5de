-- Each tenant's thresholds for anomaly alerts (defaults when absent).
CREATE TABLE alert_settings (
    tenant_id           uuid PRIMARY KEY REFERENCES tenants (id),
    volume_factor       numeric(4, 1) NOT NULL DEFAULT 3.0 CHECK (volume_factor BETWEEN 1.5 AND 50),
    volume_minimum      integer NOT NULL DEFAULT 10 CHECK (volume_minimum BETWEEN 1 AND 10000),
    night_starts        integer NOT NULL DEFAULT 21 CHECK (night_starts BETWEEN 17 AND 23),
    night_ends          integer NOT NULL DEFAULT 7 CHECK (night_ends BETWEEN 4 AND 10),
    usager_structures   integer NOT NULL DEFAULT 3 CHECK (usager_structures BETWEEN 2 AND 20),
    revocations_per_day integer NOT NULL DEFAULT 10 CHECK (revocations_per_day BETWEEN 2 AND 1000),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    updated_by          uuid
);
