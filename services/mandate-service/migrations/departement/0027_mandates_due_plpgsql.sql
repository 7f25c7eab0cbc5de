-- The same selection as 0021, written in PL/pgSQL: on a Citus worker, a statement that calls
-- a SQL-language function reading a territory's tables with parameters cannot be planned
-- ("parameterized queries for SQL functions referencing distributed tables"); a PL/pgSQL body
-- is planned statement by statement.
CREATE OR REPLACE FUNCTION mandates_due(
    tenants uuid[], archive_years integer[], purge_years integer[], at timestamptz, stage text
) RETURNS TABLE (id uuid) LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT m.id
    FROM mandates m
    JOIN structures s ON s.id = m.structure_id
    JOIN unnest(tenants, archive_years, purge_years) AS p(tenant_id, archive, purge)
      ON p.tenant_id = s.tenant_id
    WHERE NOT EXISTS (SELECT 1 FROM authorisations a
                      WHERE a.mandate_id = m.id AND a.revoked_at IS NULL
                        AND a.superseded_at IS NULL AND a.expires_at > at)
      AND CASE stage
          WHEN 'archive' THEN m.archived_at IS NULL
              AND least(coalesce(m.ended_at, m.expires_at), m.expires_at)
                  <= at - make_interval(years => p.archive)
              AND least(coalesce(m.ended_at, m.expires_at), m.expires_at)
                  > at - make_interval(years => p.archive + p.purge)
          WHEN 'purge' THEN least(coalesce(m.ended_at, m.expires_at), m.expires_at)
                  <= at - make_interval(years => p.archive + p.purge)
          ELSE false
      END;
END $$;
