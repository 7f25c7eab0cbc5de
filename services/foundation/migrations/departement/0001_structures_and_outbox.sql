-- Tables of one département's schema. This file runs once in every dep_* schema with the
-- search path set to it: table names stay unqualified.

-- Structures (town halls, CCAS, France Services, associations…) of the territory. The tenant
-- id refers to platform.tenants; no foreign key crosses schemas, the application checks it.
CREATE TABLE structures (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    name            text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    kind            text NOT NULL,
    siret           text CHECK (siret ~ '^[0-9]{14}$'),
    address         text NOT NULL DEFAULT '',
    commune_code    text NOT NULL,
    france_services boolean NOT NULL DEFAULT false,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX structures_tenant ON structures (tenant_id);
CREATE INDEX structures_commune ON structures (commune_code);

-- Messages to the territory's people (usagers' receipts, structures' reminders). Same shape
-- and rules as platform.outbox.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    channel      text NOT NULL CHECK (channel IN ('email', 'sms', 'letter')),
    recipient    text NOT NULL,
    template     text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    sent_at      timestamptz
);
CREATE INDEX outbox_pending ON outbox (available_at) WHERE sent_at IS NULL;
