-- Mandates live (not ended, not expired) in each territory at the statistics job's last run
-- (product.md §11: mandates created and live).
ALTER TABLE stats_territory_snapshots ADD COLUMN mandates_live bigint NOT NULL DEFAULT 0;
