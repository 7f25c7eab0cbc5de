-- The alerts' pages list a tenant's or a structure's open alerts and those acknowledged in the
-- last 30 days. Acknowledged alerts are kept, so without these each page read every alert ever
-- raised in the territory; with them it reads the open ones and the recent ones (one index,
-- two ranges: `acknowledged_at IS NULL`, then after the window's start). They replace
-- `anomaly_alerts_open`, which no statement used. The digest reads the alerts not mailed yet
-- through `anomaly_alerts_unmailed` instead of every alert.
CREATE INDEX anomaly_alerts_tenant_acknowledged ON anomaly_alerts (tenant_id, acknowledged_at);
CREATE INDEX anomaly_alerts_structure_acknowledged ON anomaly_alerts (structure_id, acknowledged_at);
CREATE INDEX anomaly_alerts_unmailed ON anomaly_alerts (id) WHERE mailed_at IS NULL;
DROP INDEX anomaly_alerts_open;
