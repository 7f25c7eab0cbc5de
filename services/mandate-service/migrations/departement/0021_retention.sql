-- Retention (product.md §12). A mandate that ended (revoked, superseded or transferred in
-- full, or past its term) is archived, then purged, after its tenant's periods; a usager row
-- with no mandate left is erased, and so is one the person asks to erase (no live mandate).
-- The journal keeps its entries: they hold pseudonymous ids only, so the identity row can go
-- and the chain still verifies. Mandates and identity-provider grants therefore keep the
-- usager's id without a foreign key.
ALTER TABLE mandates ADD COLUMN archived_at timestamptz;
ALTER TABLE mandates DROP CONSTRAINT mandates_usager_id_fkey;
ALTER TABLE oidc_grants DROP CONSTRAINT oidc_grants_usager_id_fkey;

CREATE TABLE usager_erasures (
    usager_id uuid PRIMARY KEY,
    erased_at timestamptz NOT NULL DEFAULT now(),
    reason    text NOT NULL CHECK (reason IN ('request', 'retention'))
);

-- The mandates due at `at` for `stage` ('archive': ended more than the archive period ago;
-- 'purge': ended more than both periods ago, archived or not), under the periods of their
-- structure's tenant (given as three arrays by the caller, who reads them from the platform).
-- One definition for the job and for `tenant-admin retention plan`.
CREATE FUNCTION mandates_due(
    tenants uuid[], archive_years integer[], purge_years integer[], at timestamptz, stage text
) RETURNS TABLE (id uuid) LANGUAGE sql STABLE AS $$
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
      END
$$;
