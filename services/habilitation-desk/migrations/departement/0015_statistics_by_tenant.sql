-- Monthly figures per tenant (the council or commune owning the structures), maintained by the
-- job `statistics_refresh` in the same transaction as `stats_daily`, so that a territory
-- admin's space reads a dozen rows per month instead of summing the daily rows of a thousand
-- structures. People are counted as in `stats_people`: once per month and structure.
CREATE TABLE stats_tenant_months (
    tenant_id uuid NOT NULL,
    month     date NOT NULL,
    -- The démarche category of uses; '' for creations, revocations and people.
    category  text NOT NULL DEFAULT '',
    created   bigint NOT NULL DEFAULT 0,
    used      bigint NOT NULL DEFAULT 0,
    revoked   bigint NOT NULL DEFAULT 0,
    people    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month, category)
);

-- A structure's people by month (the référent's page): the primary key starts with the month.
CREATE INDEX stats_people_structure ON stats_people (structure_id, month);

-- What the job folded before this table existed.
INSERT INTO stats_tenant_months (tenant_id, month, category, created, used, revoked)
SELECT s.tenant_id, date_trunc('month', d.day)::date, d.category,
       sum(d.created), sum(d.used), sum(d.revoked)
FROM stats_daily d JOIN structures s ON s.id = d.structure_id
GROUP BY 1, 2, 3;
INSERT INTO stats_tenant_months (tenant_id, month, category, people)
SELECT s.tenant_id, p.month, '', count(*)
FROM stats_people p JOIN structures s ON s.id = p.structure_id
GROUP BY 1, 2
ON CONFLICT (tenant_id, month, category) DO UPDATE SET people = EXCLUDED.people;
