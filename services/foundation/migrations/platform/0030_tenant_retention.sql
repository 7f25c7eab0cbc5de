-- Retention of mandate data (product.md §12), per tenant: a mandate that ended is archived
-- `mandate_archive_years` later and purged `mandate_purge_years` after that (3 + 3 by default).
ALTER TABLE tenants
    ADD COLUMN mandate_archive_years integer NOT NULL DEFAULT 3
        CHECK (mandate_archive_years BETWEEN 1 AND 10),
    ADD COLUMN mandate_purge_years integer NOT NULL DEFAULT 3
        CHECK (mandate_purge_years BETWEEN 1 AND 30);
