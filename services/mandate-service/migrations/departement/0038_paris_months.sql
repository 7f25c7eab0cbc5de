-- The activity page's months are now those of the calendar in France, cut at midnight in Paris
-- (they were cut at midnight in the database session's time zone, UTC here). A month is named
-- by its first day. The months counted so far were cut the other way: they are dropped, and
-- counted again from the journal at the next view of each aidant's page (counts only, the
-- journal is the source).
DELETE FROM activity_months;
ALTER TABLE activity_months ALTER COLUMN month TYPE date;
