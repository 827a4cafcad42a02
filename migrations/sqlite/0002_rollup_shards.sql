-- Rollup shards (see the PostgreSQL migration). SQLite has one writer at a time and uses shard 0 only;
-- the column and index keep both engines' schema and statements the same.
ALTER TABLE usage_rollups ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
DROP INDEX usage_rollups_open;
CREATE UNIQUE INDEX usage_rollups_open ON usage_rollups (tenant_id, day, usage_type, shard) WHERE billed_by IS NULL;

-- Merged shards (see the PostgreSQL migration); empty on SQLite, where there is only shard 0.
CREATE TABLE usage_rollup_merges (
    merged_id INTEGER PRIMARY KEY,
    into_id   INTEGER NOT NULL
);
CREATE INDEX usage_rollup_merges_into ON usage_rollup_merges (into_id);
