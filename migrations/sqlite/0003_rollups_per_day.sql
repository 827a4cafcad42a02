-- Rollups become one row per tenant, billing-time-zone day and shard, with a column per usage type (see
-- the PostgreSQL migration). The old rows are folded into the new ones, and usage_rollup_merges records,
-- for each old row, the new row that now holds its events. New ids start above every id an event or a
-- merge names (AUTOINCREMENT never hands out a lower one).
DROP INDEX usage_rollups_open;
DROP INDEX usage_rollups_tenant_day;
DROP INDEX usage_rollups_billed_by;
ALTER TABLE usage_rollups RENAME TO usage_rollups_by_type;

CREATE TABLE usage_rollups (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    day                TEXT NOT NULL,
    shard              INTEGER NOT NULL DEFAULT 0,
    stt_words          BIGINT NOT NULL DEFAULT 0,
    tts_words          BIGINT NOT NULL DEFAULT 0,
    phone_calls        BIGINT NOT NULL DEFAULT 0,
    event_count        BIGINT NOT NULL DEFAULT 0,
    billed_by          TEXT,
    billed_stt_words   BIGINT,
    billed_tts_words   BIGINT,
    billed_phone_calls BIGINT,
    billed_at          TEXT
);

INSERT INTO usage_rollups (id, tenant_id, day, shard, stt_words, tts_words, phone_calls, event_count,
                           billed_by, billed_stt_words, billed_tts_words, billed_phone_calls, billed_at)
SELECT (SELECT MAX(COALESCE((SELECT MAX(id) FROM usage_rollups_by_type), 0),
                   COALESCE((SELECT MAX(merged_id) FROM usage_rollup_merges), 0),
                   COALESCE((SELECT MAX(rollup_id) FROM usage_events), 0)))
         + ROW_NUMBER() OVER (ORDER BY tenant_id, day, shard, billed_by),
       tenant_id, day, shard,
       SUM(CASE WHEN usage_type = 'stt_words' THEN quantity ELSE 0 END),
       SUM(CASE WHEN usage_type = 'tts_words' THEN quantity ELSE 0 END),
       SUM(CASE WHEN usage_type = 'phone_calls' THEN quantity ELSE 0 END),
       SUM(event_count),
       billed_by,
       CASE WHEN billed_by IS NOT NULL
            THEN SUM(CASE WHEN usage_type = 'stt_words' THEN COALESCE(billed_quantity, 0) ELSE 0 END) END,
       CASE WHEN billed_by IS NOT NULL
            THEN SUM(CASE WHEN usage_type = 'tts_words' THEN COALESCE(billed_quantity, 0) ELSE 0 END) END,
       CASE WHEN billed_by IS NOT NULL
            THEN SUM(CASE WHEN usage_type = 'phone_calls' THEN COALESCE(billed_quantity, 0) ELSE 0 END) END,
       MAX(billed_at)
FROM usage_rollups_by_type
GROUP BY tenant_id, day, shard, billed_by;

CREATE TEMPORARY TABLE rollup_folds AS
SELECT o.id AS old_id, n.id AS new_id
FROM usage_rollups_by_type o
JOIN usage_rollups n ON n.tenant_id = o.tenant_id AND n.day = o.day AND n.shard = o.shard
                    AND n.billed_by IS o.billed_by;
UPDATE usage_rollup_merges SET into_id = (SELECT new_id FROM rollup_folds WHERE old_id = into_id)
WHERE into_id IN (SELECT old_id FROM rollup_folds);
INSERT INTO usage_rollup_merges (merged_id, into_id) SELECT old_id, new_id FROM rollup_folds;
DROP TABLE rollup_folds;
DROP TABLE usage_rollups_by_type;

CREATE UNIQUE INDEX usage_rollups_open ON usage_rollups (tenant_id, day, shard) WHERE billed_by IS NULL;
CREATE INDEX usage_rollups_tenant_day ON usage_rollups (tenant_id, day);
CREATE INDEX usage_rollups_billed_by ON usage_rollups (billed_by);
