-- The platform follower's sweep and its organizations' read time (src/platform).
-- SQLite keeps the same columns in migrations/sqlite/0012_platform_sweep.sql.
--
-- The platform stamps a usage row with its transaction's start (`now()`), and its sessions can keep a
-- transaction open for minutes, so a row can commit long after the time it carries, beyond the re-read of
-- the last PLATFORM_LOOKBACK_S seconds. The sweep reads the open period (and the previous one until it is
-- billed) again now and then, in keyset batches, and takes the rows whose transaction had not committed in
-- the platform's snapshot `sweep_snapshot` (the start of the previous sweep). A sweep in progress is its
-- starting snapshot, how far it has read and where it ends.
ALTER TABLE platform_follow ADD COLUMN sweep_snapshot TEXT;
ALTER TABLE platform_follow ADD COLUMN sweep_snapshot_at TIMESTAMPTZ;
ALTER TABLE platform_follow ADD COLUMN sweep_pass_snapshot TEXT;
ALTER TABLE platform_follow ADD COLUMN sweep_pos_at TIMESTAMPTZ;
ALTER TABLE platform_follow ADD COLUMN sweep_pos_id TEXT;
ALTER TABLE platform_follow ADD COLUMN sweep_through_at TIMESTAMPTZ;
ALTER TABLE platform_follow ADD COLUMN sweep_through_id TEXT;
ALTER TABLE platform_follow ADD COLUMN sweep_started_at TIMESTAMPTZ;
ALTER TABLE platform_follow ADD COLUMN sweep_done_at TIMESTAMPTZ;
ALTER TABLE platform_follow ADD COLUMN sweep_scanned BIGINT NOT NULL DEFAULT 0;
-- Rows found by the sweep and stored (not seen by the reads at the cursor nor by the re-read).
ALTER TABLE platform_follow ADD COLUMN rows_swept BIGINT NOT NULL DEFAULT 0;
-- The platform's clock at the last read of its organizations after which every change was applied: a demo
-- switch seen later happened after it (and by the platform's `tenants.updated_at`).
ALTER TABLE platform_follow ADD COLUMN tenants_read_at TIMESTAMPTZ;

-- A follower already running compares its first sweep with its last re-read's snapshot: rows committed
-- before that one were read at the cursor, by a re-read, or not at all (nothing can find those now).
UPDATE platform_follow SET sweep_snapshot = recheck_snapshot, sweep_snapshot_at = updated_at
WHERE recheck_snapshot IS NOT NULL;
