-- Rollups become one row per tenant, billing-time-zone day and shard, with a column per usage type. A
-- tenant's words and calls of a day add to one row, so a batch writes a third as many rollups, and a
-- day reads as one row. The rows of the old shape (one per type) are folded into the new ones; for each
-- old row, usage_rollup_merges records the new row that now holds its events (the events are not
-- rewritten). New ids continue the old sequence, so no new row ever has the id of an old one.
DROP INDEX usage_rollups_open;
DROP INDEX usage_rollups_tenant_day;
DROP INDEX usage_rollups_billed_by;
ALTER TABLE usage_rollups RENAME TO usage_rollups_by_type;

CREATE TABLE usage_rollups (
    id                 BIGINT PRIMARY KEY DEFAULT nextval('usage_rollups_id_seq'),
    tenant_id          TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    day                DATE NOT NULL,
    shard              SMALLINT NOT NULL DEFAULT 0,
    stt_words          BIGINT NOT NULL DEFAULT 0,
    tts_words          BIGINT NOT NULL DEFAULT 0,
    phone_calls        BIGINT NOT NULL DEFAULT 0,
    event_count        BIGINT NOT NULL DEFAULT 0,
    billed_by          TEXT,
    billed_stt_words   BIGINT,
    billed_tts_words   BIGINT,
    billed_phone_calls BIGINT,
    billed_at          TIMESTAMPTZ
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02);
ALTER SEQUENCE usage_rollups_id_seq OWNED BY usage_rollups.id;

INSERT INTO usage_rollups (tenant_id, day, shard, stt_words, tts_words, phone_calls, event_count,
                           billed_by, billed_stt_words, billed_tts_words, billed_phone_calls, billed_at)
SELECT tenant_id, day, shard,
       COALESCE(SUM(quantity) FILTER (WHERE usage_type = 'stt_words'), 0),
       COALESCE(SUM(quantity) FILTER (WHERE usage_type = 'tts_words'), 0),
       COALESCE(SUM(quantity) FILTER (WHERE usage_type = 'phone_calls'), 0),
       SUM(event_count),
       billed_by,
       CASE WHEN billed_by IS NOT NULL
            THEN COALESCE(SUM(billed_quantity) FILTER (WHERE usage_type = 'stt_words'), 0) END,
       CASE WHEN billed_by IS NOT NULL
            THEN COALESCE(SUM(billed_quantity) FILTER (WHERE usage_type = 'tts_words'), 0) END,
       CASE WHEN billed_by IS NOT NULL
            THEN COALESCE(SUM(billed_quantity) FILTER (WHERE usage_type = 'phone_calls'), 0) END,
       MAX(billed_at)
FROM usage_rollups_by_type
GROUP BY tenant_id, day, shard, billed_by;

CREATE TEMPORARY TABLE rollup_folds ON COMMIT DROP AS
SELECT o.id AS old_id, n.id AS new_id
FROM usage_rollups_by_type o
JOIN usage_rollups n ON n.tenant_id = o.tenant_id AND n.day = o.day AND n.shard = o.shard
                    AND n.billed_by IS NOT DISTINCT FROM o.billed_by;
-- Rows merged into an old row earlier now count in the new row that holds it.
UPDATE usage_rollup_merges m SET into_id = f.new_id FROM rollup_folds f WHERE m.into_id = f.old_id;
INSERT INTO usage_rollup_merges (merged_id, into_id) SELECT old_id, new_id FROM rollup_folds;
DROP TABLE usage_rollups_by_type;

CREATE UNIQUE INDEX usage_rollups_open ON usage_rollups (tenant_id, day, shard) WHERE billed_by IS NULL;
CREATE INDEX usage_rollups_tenant_day ON usage_rollups (tenant_id, day);
CREATE INDEX usage_rollups_billed_by ON usage_rollups (billed_by);
