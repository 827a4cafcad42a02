-- A reader of one tenant's usage reads that tenant's rollups and their own events not folded yet, never the
-- tail of every tenant, with a plan that does not depend on statistics (after a burst with no ANALYZE the
-- planner knows nothing of the tables); and a rollup costs less to create.

-- A rollup's tail is one range of this index: its events from the fold's mark on. It replaces the index by
-- (rollup_id, occurred_at): a day that straddles free time reads its rollup's events through the prefix.
CREATE INDEX usage_events_rollup_tx ON usage_events (rollup_id, tx);
DROP INDEX usage_events_rollup;

-- Open rollups are found through usage_rollups_open (tenant, day, shard; the ingests' key), billed ones
-- through this index. A new rollup is open: it writes the primary key and usage_rollups_open, and no
-- entry here until a run claims it (once).
CREATE INDEX usage_rollups_billed ON usage_rollups_folded (tenant_id, day) WHERE billed_by IS NOT NULL;
DROP INDEX usage_rollups_tenant_day;
DROP INDEX usage_rollups_billed_by;

-- Tenants are never deleted, so the foreign key only checked the inserts of rollups, and took a share lock
-- on the tenant's row for each: concurrent ingests creating rollups of the same tenants shared those locks
-- (multixacts). The functions that create rollups check the tenants instead, raising the same error
-- (foreign_key_violation, which ingestion reads as an unknown tenant).
-- (Its name is the one migration 0003 gave it beside the table it replaced: found, not spelled.)
DO $$
DECLARE
    fk name;
BEGIN
    FOR fk IN SELECT conname FROM pg_constraint
              WHERE conrelid = 'usage_rollups_folded'::regclass AND contype = 'f'
                AND confrelid = 'tenants'::regclass
    LOOP
        EXECUTE format('ALTER TABLE usage_rollups_folded DROP CONSTRAINT %I', fk);
    END LOOP;
END
$$;

-- The open rollup (shard 0) of each (tenant, local day), created if missing; ids in the order given. As in
-- migration 0006, with the missing rollups created in one statement that returns their ids (a group
-- created meanwhile by a concurrent ingest is read again), and the tenants checked here.
CREATE OR REPLACE FUNCTION usage_rollup_ids(p_tenants text[], p_days date[]) RETURNS int8[]
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    ids int8[];
BEGIN
    SELECT array_agg((SELECT r.id FROM usage_rollups_folded r
                      WHERE r.tenant_id = k.tenant_id AND r.day = k.day AND r.shard = 0
                        AND r.billed_by IS NULL) ORDER BY k.ord)
    INTO ids
    FROM UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord);
    IF array_position(ids, NULL) IS NULL THEN
        RETURN ids;
    END IF;
    IF EXISTS (SELECT 1 FROM UNNEST(p_tenants) WITH ORDINALITY AS k(tenant_id, ord)
               WHERE ids[k.ord] IS NULL
                 AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = k.tenant_id)) THEN
        RAISE EXCEPTION 'usage_rollup_ids: an unknown tenant' USING ERRCODE = 'foreign_key_violation';
    END IF;
    WITH created AS (
        INSERT INTO usage_rollups_folded (tenant_id, day, shard)
        SELECT k.tenant_id, k.day, 0
        FROM UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord)
        WHERE ids[k.ord] IS NULL
        ORDER BY k.ord
        ON CONFLICT (tenant_id, day, shard) WHERE billed_by IS NULL DO NOTHING
        RETURNING usage_rollups_folded.id, usage_rollups_folded.tenant_id, usage_rollups_folded.day
    )
    SELECT array_agg(COALESCE(ids[k.ord], c.id) ORDER BY k.ord)
    INTO ids
    FROM UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord)
    LEFT JOIN created c ON c.tenant_id = k.tenant_id AND c.day = k.day;
    IF array_position(ids, NULL) IS NULL THEN
        RETURN ids;
    END IF;
    -- Created by a concurrent ingest (the insert waited for its commit): read with a new snapshot.
    SELECT array_agg(COALESCE(ids[k.ord],
                              (SELECT r.id FROM usage_rollups_folded r
                               WHERE r.tenant_id = k.tenant_id AND r.day = k.day AND r.shard = 0
                                 AND r.billed_by IS NULL)) ORDER BY k.ord)
    INTO ids
    FROM UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord);
    IF array_position(ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'usage_rollup_ids: a group without its open rollup';
    END IF;
    RETURN ids;
END
$$;

-- One event, as in migration 0006, with the tenant checked where its rollup is created (and, as every
-- function here, no sequential scan in a plan cached while the tables were small).
CREATE OR REPLACE FUNCTION usage_ingest_event(
    p_tenant text, p_bucket int4, p_day date, p_event_id text, p_type text, p_quantity int8,
    p_occurred timestamptz, p_metadata text, p_received timestamptz
) RETURNS text[] LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    rollup int8;
    inserted text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7301, p_bucket);
    SELECT id INTO rollup FROM usage_rollups_folded
    WHERE tenant_id = p_tenant AND day = p_day AND shard = 0 AND billed_by IS NULL;
    IF rollup IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant) THEN
            RAISE EXCEPTION 'usage_ingest_event: an unknown tenant' USING ERRCODE = 'foreign_key_violation';
        END IF;
        INSERT INTO usage_rollups_folded (tenant_id, day, shard) VALUES (p_tenant, p_day, 0)
        ON CONFLICT (tenant_id, day, shard) WHERE billed_by IS NULL DO NOTHING
        RETURNING id INTO rollup;
        IF rollup IS NULL THEN
            -- Created meanwhile by a concurrent ingest (this insert waited for its commit).
            SELECT id INTO rollup FROM usage_rollups_folded
            WHERE tenant_id = p_tenant AND day = p_day AND shard = 0 AND billed_by IS NULL;
        END IF;
    END IF;
    INSERT INTO usage_events
        (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id, metadata)
    VALUES (p_event_id, p_tenant, p_type, p_quantity, p_occurred, p_received, rollup, p_metadata)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id INTO inserted;
    RETURN CASE WHEN inserted IS NULL THEN '{}'::text[] ELSE ARRAY[inserted] END;
END
$$;

-- One tenant's rollups of local days in [p_from, p_before), as they are now: the folded sums plus the
-- rollup's own events above the mark (and those of the rollups merged into it). Only the open ones with
-- p_open. The cost is the tenant's days and its own tail, whatever the other tenants' tails hold.
--
-- The plan cannot degrade with the statistics, nor with a plan cached while the tables were small (a
-- connection keeps its generic plan; after a burst with no ANALYZE nothing makes it plan again):
-- * each rollup's tail is a lateral aggregate, which the planner cannot flatten into a join: it runs once
--   per rollup, as a scan of usage_events given that rollup's id;
-- * the tail's condition is written (rollup_id, tx) >= (id, mark) with rollup_id = id: only
--   usage_events_rollup_tx can answer it (one range: the rollup's events from the mark on). Written
--   tx >= mark it also matched usage_events_tx, the fold's index of every tenant's tail, which the
--   planner took for small tables, and kept;
-- * the rollups are selected by conditions only usage_rollups_open or usage_rollups_billed answer;
-- * sequential scans are off inside the function, so no table is read whole because it looked small;
--   and JIT with them (a disabled scan's cost would make PostgreSQL compile the statement).
-- STABLE: it reads in its caller's snapshot, as the view usage_rollups does.
CREATE FUNCTION usage_tenant_rollups(p_tenant text, p_from date, p_before date, p_open boolean)
RETURNS TABLE (id int8, tenant_id text, day date, shard int2, stt_words int8, tts_words int8,
               phone_calls int8, event_count int8, billed_by text, billed_stt_words int8,
               billed_tts_words int8, billed_phone_calls int8, billed_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 60 SET enable_seqscan = off SET jit = off AS $$
#variable_conflict use_column
DECLARE
    lo xid8;
BEGIN
    SELECT f.folded_through INTO lo FROM usage_fold f WHERE f.one;
    RETURN QUERY
    SELECT r.id, r.tenant_id, r.day, r.shard,
           r.stt_words + t.stt_words + mt.stt_words,
           r.tts_words + t.tts_words + mt.tts_words,
           r.phone_calls + t.phone_calls + mt.phone_calls,
           r.event_count + t.event_count + mt.event_count,
           r.billed_by, r.billed_stt_words, r.billed_tts_words, r.billed_phone_calls, r.billed_at
    FROM (
        SELECT * FROM usage_rollups_folded o
        WHERE o.tenant_id = p_tenant AND o.billed_by IS NULL AND o.day >= p_from AND o.day < p_before
        UNION ALL
        SELECT * FROM usage_rollups_folded b
        WHERE NOT p_open
          AND b.tenant_id = p_tenant AND b.billed_by IS NOT NULL AND b.day >= p_from AND b.day < p_before
    ) r
    CROSS JOIN LATERAL (
        SELECT CAST(COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'stt_words'), 0) AS BIGINT)
                   AS stt_words,
               CAST(COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'tts_words'), 0) AS BIGINT)
                   AS tts_words,
               CAST(COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'phone_calls'), 0) AS BIGINT)
                   AS phone_calls,
               COUNT(*) AS event_count
        FROM usage_events e
        WHERE e.rollup_id = r.id AND (e.rollup_id, e.tx) >= (r.id, lo)
    ) t
    -- The rollups merged into this one (usage::compact, before migration 0006): the same, per merged id.
    CROSS JOIN LATERAL (
        SELECT CAST(COALESCE(SUM(x.stt_words), 0) AS BIGINT) AS stt_words,
               CAST(COALESCE(SUM(x.tts_words), 0) AS BIGINT) AS tts_words,
               CAST(COALESCE(SUM(x.phone_calls), 0) AS BIGINT) AS phone_calls,
               CAST(COALESCE(SUM(x.event_count), 0) AS BIGINT) AS event_count
        FROM usage_rollup_merges m
        CROSS JOIN LATERAL (
            SELECT COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'stt_words'), 0) AS stt_words,
                   COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'tts_words'), 0) AS tts_words,
                   COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'phone_calls'), 0) AS phone_calls,
                   COUNT(*) AS event_count
            FROM usage_events e
            WHERE e.rollup_id = m.merged_id AND (e.rollup_id, e.tx) >= (m.merged_id, lo)
        ) x
        WHERE m.into_id = r.id
    ) mt;
END
$$;

-- The monthly run's claim of a tenant's open rollups before p_before under the key p_key: locks them in
-- (day, shard) order, the order merges lock them in, then stores each one's quantities as they are now
-- (usage_tenant_rollups) as its billed quantities. The caller holds the tenant's bucket (no ingest in
-- flight adds to these rollups) and the fold's mark (no fold moves events out of the tail meanwhile).
CREATE FUNCTION usage_claim_rollups(p_tenant text, p_before date, p_key text, p_at timestamptz)
RETURNS TABLE (id int8, day date, stt_words int8, tts_words int8, phone_calls int8)
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM usage_rollups_folded r
    WHERE r.tenant_id = p_tenant AND r.billed_by IS NULL AND r.day < p_before
    ORDER BY r.day, r.shard
    FOR UPDATE;
    RETURN QUERY
    UPDATE usage_rollups_folded r
    SET billed_by = p_key, billed_at = p_at, billed_stt_words = v.stt_words,
        billed_tts_words = v.tts_words, billed_phone_calls = v.phone_calls
    FROM usage_tenant_rollups(p_tenant, '-infinity', p_before, TRUE) v
    -- The tenant's conditions on r too: whatever the join, only its open rollups are read.
    WHERE r.id = v.id AND r.tenant_id = p_tenant AND r.billed_by IS NULL AND r.day < p_before
    RETURNING r.id, r.day, r.billed_stt_words, r.billed_tts_words, r.billed_phone_calls;
END
$$;

-- The tail of every tenant (the view usage_rollups, read by the pages over all tenants): through the
-- index on tx, whatever the statistics say or said when the plan was cached.
ALTER FUNCTION usage_tail_sums() SET enable_seqscan = off SET jit = off;
-- The fold likewise: a plan cached while the events were few would otherwise scan them all, each fold.
ALTER FUNCTION usage_fold() SET enable_seqscan = off SET jit = off;
