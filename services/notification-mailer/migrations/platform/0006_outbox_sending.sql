-- Delivery in three steps: claim (sending_started_at set and committed), send, record. A message
-- whose sending started but whose outcome was never recorded (the worker died in between) is
-- not sent again automatically — it may have been delivered — but listed for an operator, who
-- re-queues it with tenant-admin after checking.
ALTER TABLE outbox ADD COLUMN sending_started_at timestamptz;
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (available_at) WHERE sent_at IS NULL AND sending_started_at IS NULL;
