-- The rollups' stored sums move to usage_rollups_folded, read through the view usage_rollups (see the
-- PostgreSQL migration, where the view adds the events not folded yet). SQLite has one writer at a time
-- and still adds each batch to its rollups inside the request, so nothing is ever waiting to be folded:
-- the view is the table.
ALTER TABLE usage_rollups RENAME TO usage_rollups_folded;
CREATE VIEW usage_rollups AS SELECT * FROM usage_rollups_folded;
