-- Usage is folded into rollups after the request, not inside it. An ingest stores its events (each naming
-- the open rollup of its tenant and local day, created if need be) and nothing more: the rollups' sums are
-- brought up to date set-based, in the background, by usage_fold(). Readers see the rollups as they are
-- now through the view usage_rollups: the folded sums plus the events not folded yet (the tail).
--
-- Which events are folded is decided by the transaction that inserted them (tx): every event whose
-- transaction is below usage_fold.folded_through counts in its rollup's stored sums, every other one in the
-- tail. A fold moves the mark to the oldest transaction still running (the xmin of its snapshot), so an
-- event of a transaction in flight is never skipped: it is folded by a later fold.
--
-- Events stored before this migration were counted in their rollups by the request (tx 0, folded).
-- Stop the earlier version's ingestion before migrating: its inserts would be counted a second time.

ALTER TABLE usage_rollups RENAME TO usage_rollups_folded;

ALTER TABLE usage_events ADD COLUMN tx xid8 NOT NULL DEFAULT '0';
ALTER TABLE usage_events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
CREATE INDEX usage_events_tx ON usage_events (tx);

CREATE TABLE usage_fold (
    one            BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    folded_through xid8 NOT NULL
);
INSERT INTO usage_fold (folded_through) VALUES (pg_snapshot_xmin(pg_current_snapshot()));

-- The tail: events not folded yet, summed by the rollup that holds them now (a shard merged away by
-- usage::compact counts in the rollup it was merged into). A function so that the mark is a value when the
-- query is planned: the planner then sees from the index how few events are above it, where a mark read by a
-- subquery would be planned as a third of the table. STABLE: it reads in its caller's snapshot, so a view
-- that adds the tail to the folded sums reads both as of one moment.
CREATE FUNCTION usage_tail_sums()
RETURNS TABLE (id int8, stt_words int8, tts_words int8, phone_calls int8, event_count int8)
LANGUAGE plpgsql STABLE ROWS 1000 AS $$
DECLARE
    lo xid8;
BEGIN
    SELECT folded_through INTO lo FROM usage_fold;
    RETURN QUERY
    SELECT COALESCE(m.into_id, e.rollup_id),
           CAST(COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'stt_words'), 0) AS BIGINT),
           CAST(COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'tts_words'), 0) AS BIGINT),
           CAST(COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'phone_calls'), 0) AS BIGINT),
           COUNT(*)
    FROM usage_events e
    LEFT JOIN usage_rollup_merges m ON m.merged_id = e.rollup_id
    WHERE e.tx >= lo
    GROUP BY 1;
END
$$;
CREATE VIEW usage_tail AS SELECT * FROM usage_tail_sums();

-- The rollups as they are now. One statement reads the mark, the folded sums and the tail in one
-- snapshot, and a fold commits its sums and the mark together, so no event counts twice or not at all.
CREATE VIEW usage_rollups AS
SELECT r.id, r.tenant_id, r.day, r.shard,
       r.stt_words + COALESCE(t.stt_words, 0) AS stt_words,
       r.tts_words + COALESCE(t.tts_words, 0) AS tts_words,
       r.phone_calls + COALESCE(t.phone_calls, 0) AS phone_calls,
       r.event_count + COALESCE(t.event_count, 0) AS event_count,
       r.billed_by, r.billed_stt_words, r.billed_tts_words, r.billed_phone_calls, r.billed_at
FROM usage_rollups_folded r
LEFT JOIN usage_tail t ON t.id = r.id;

-- Folds every event of a finished transaction not folded yet; returns the rollups updated. One
-- transaction: the sums and the mark move together, or not at all (a crash mid-fold leaves both).
CREATE FUNCTION usage_fold() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    lo xid8;
    hi xid8;
    n bigint;
BEGIN
    -- One fold at a time; claims and merges hold this row (FOR SHARE) while they read the tail.
    SELECT folded_through INTO lo FROM usage_fold FOR UPDATE;
    -- A snapshot taken after the lock: every transaction below its xmin has ended, so its events are
    -- visible now if they ever will be.
    SELECT pg_snapshot_xmin(pg_current_snapshot()) INTO hi;
    IF hi <= lo THEN
        RETURN 0;
    END IF;
    UPDATE usage_rollups_folded r
    SET stt_words = r.stt_words + t.stt_words, tts_words = r.tts_words + t.tts_words,
        phone_calls = r.phone_calls + t.phone_calls, event_count = r.event_count + t.event_count
    FROM (
        SELECT COALESCE(m.into_id, e.rollup_id) AS id,
               COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'stt_words'), 0) AS stt_words,
               COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'tts_words'), 0) AS tts_words,
               COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'phone_calls'), 0) AS phone_calls,
               COUNT(*) AS event_count
        FROM usage_events e
        LEFT JOIN usage_rollup_merges m ON m.merged_id = e.rollup_id
        WHERE e.tx >= lo AND e.tx < hi
        GROUP BY 1
    ) t
    WHERE r.id = t.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE usage_fold SET folded_through = hi;
    RETURN n;
END
$$;

-- Claims and merges of a tenant's rollups exclude the ingests of its tenants through 64 buckets (the service
-- computes a tenant's bucket): an ingest holds its tenants' buckets in share mode until it commits, a claim
-- or a merge holds its tenant's exclusively, so no rollup is claimed or merged away while an ingest in flight
-- adds events to it. A claim or a merge also moves its bucket's generation on: a service that remembers
-- rollup ids uses them only while the generation it read (holding the bucket) is the one they were read
-- under. Generations start at random, so two databases never share one.
CREATE TABLE usage_rollup_buckets (
    bucket     INTEGER PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO usage_rollup_buckets (bucket, generation)
SELECT b, CAST(random() * 4e18 AS BIGINT) FROM generate_series(0, 63) b;

-- Holds the given buckets in share mode (in bucket order, once each); returns their generations, in the
-- order given. The generations are read after the locks are held.
CREATE FUNCTION usage_hold_buckets(p_buckets int4[]) RETURNS int8[] LANGUAGE plpgsql AS $$
DECLARE
    generations int8[];
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7301, b)
    FROM (SELECT DISTINCT b FROM UNNEST(p_buckets) b ORDER BY 1) k;
    SELECT array_agg(g.generation ORDER BY k.ord) INTO generations
    FROM UNNEST(p_buckets) WITH ORDINALITY AS k(bucket, ord)
    JOIN usage_rollup_buckets g ON g.bucket = k.bucket;
    RETURN generations;
END
$$;

-- The open rollup (shard 0) of each (tenant, local day), created if missing; ids in the order given. The
-- caller holds the tenants' buckets. The rollups are read before any is created: a read waits for nobody,
-- while an insert that meets an existing rollup would wait for a fold updating it. Groups come in key order,
-- so concurrent creations never deadlock.
CREATE FUNCTION usage_rollup_ids(p_tenants text[], p_days date[]) RETURNS int8[] LANGUAGE plpgsql AS $$
DECLARE
    ids int8[];
BEGIN
    -- One index probe per group, whatever the plan cache decides.
    SELECT array_agg((SELECT r.id FROM usage_rollups_folded r
                      WHERE r.tenant_id = k.tenant_id AND r.day = k.day AND r.shard = 0
                        AND r.billed_by IS NULL) ORDER BY k.ord)
    INTO ids
    FROM UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord);
    IF array_position(ids, NULL) IS NULL THEN
        RETURN ids;
    END IF;
    INSERT INTO usage_rollups_folded (tenant_id, day, shard)
    SELECT k.tenant_id, k.day, 0
    FROM UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord)
    WHERE ids[k.ord] IS NULL
    ORDER BY k.ord
    ON CONFLICT (tenant_id, day, shard) WHERE billed_by IS NULL DO NOTHING;
    -- Again, with a new snapshot: it sees the rollups this one and concurrent ingests created.
    SELECT array_agg((SELECT r.id FROM usage_rollups_folded r
                      WHERE r.tenant_id = k.tenant_id AND r.day = k.day AND r.shard = 0
                        AND r.billed_by IS NULL) ORDER BY k.ord)
    INTO ids
    FROM UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord);
    IF array_position(ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'usage_rollup_ids: a group without its open rollup';
    END IF;
    RETURN ids;
END
$$;

-- A checked ingest in one call: the buckets, the rollups' ids, then the events, skipping ids already stored.
-- Events are sorted by id, each with its group's index from 0. Returns the ids inserted.
CREATE FUNCTION usage_ingest_events(
    p_tenants text[], p_days date[], p_buckets int4[],
    p_event_ids text[], p_event_groups int4[], p_event_types text[], p_event_quantities int8[],
    p_occurred timestamptz[], p_metadata text[], p_received timestamptz
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    rollup_ids int8[];
    inserted text[];
BEGIN
    PERFORM usage_hold_buckets(p_buckets);
    rollup_ids := usage_rollup_ids(p_tenants, p_days);
    WITH ins AS (
        INSERT INTO usage_events
            (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id, metadata)
        SELECT e.event_id, p_tenants[e.grp + 1], e.usage_type, e.quantity, e.occurred_at, p_received,
               rollup_ids[e.grp + 1], e.metadata
        FROM UNNEST(p_event_ids, p_event_groups, p_event_types, p_event_quantities, p_occurred, p_metadata)
             WITH ORDINALITY AS e(event_id, grp, usage_type, quantity, occurred_at, metadata, ord)
        ORDER BY e.ord
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
    )
    SELECT COALESCE(array_agg(event_id), '{}') INTO inserted FROM ins;
    RETURN inserted;
END
$$;

-- The same for one event (a single event's group commit, usually): statements of one row each.
CREATE FUNCTION usage_ingest_event(
    p_tenant text, p_bucket int4, p_day date, p_event_id text, p_type text, p_quantity int8,
    p_occurred timestamptz, p_metadata text, p_received timestamptz
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    rollup int8;
    inserted text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7301, p_bucket);
    SELECT id INTO rollup FROM usage_rollups_folded
    WHERE tenant_id = p_tenant AND day = p_day AND shard = 0 AND billed_by IS NULL;
    IF rollup IS NULL THEN
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

DROP FUNCTION usage_ingest_checked(text[], date[], int8[], int8[], int8[], int8[], int2, text[], int4[], text[],
                                   int8[], timestamptz[], text[], timestamptz);
DROP FUNCTION usage_ingest_one(text, date, int2, text, text, int8, timestamptz, text, timestamptz);
