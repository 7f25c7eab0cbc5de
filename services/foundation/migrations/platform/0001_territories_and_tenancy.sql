-- National reference data and the registry of tenants and territory schemas.
-- Codes are INSEE codes kept as text: '2A', '2B' and '971'… are not numbers.

CREATE TABLE regions (
    code text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE departements (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    region_code text NOT NULL REFERENCES regions (code)
);

-- A tenant is a subscribing collectivity: a département council or a commune (or
-- intercommunality, registered under its seat commune). Its data lives in its département's
-- schema; communes of one département are separated from each other by policy.
CREATE TABLE tenants (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('departement', 'commune')),
    name             text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    departement_code text NOT NULL REFERENCES departements (code),
    commune_code     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'commune') = (commune_code IS NOT NULL))
);
-- One council per département, one tenant per commune.
CREATE UNIQUE INDEX tenants_one_council_per_departement
    ON tenants (departement_code) WHERE kind = 'departement';
CREATE UNIQUE INDEX tenants_one_per_commune
    ON tenants (commune_code) WHERE kind = 'commune';

-- State of each département schema, written by the migrator. The services serve a
-- territory only when its schema is 'ready' at the version they were built for.
CREATE TABLE departement_schemas (
    departement_code text PRIMARY KEY REFERENCES departements (code),
    schema_name      text NOT NULL UNIQUE,
    role_name        text NOT NULL UNIQUE,
    version          bigint NOT NULL DEFAULT 0,
    status           text NOT NULL CHECK (status IN ('provisioning', 'ready', 'failed')),
    last_error       text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- National messages (to professionals, issuers, the national team). Written in the same
-- transaction as the action that causes them; consumed by notification-mailer. The id is
-- stable and becomes the Message-ID, so a retried delivery is recognisable.
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
