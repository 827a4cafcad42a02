-- A checked ingest (usage::ingest, Mode::Checked) as one call, so one round trip and one transaction:
-- each group's rollup gets the group's sums, events go in unless their id is stored, and what the
-- stored ones had added is taken back out. Groups (p_tenants .. p_counts) come in lock order, events
-- sorted by id, each with its group's index from 0. Returns the ids inserted.
CREATE FUNCTION usage_ingest_checked(
    p_tenants text[], p_days date[], p_stt_words int8[], p_tts_words int8[], p_phone_calls int8[],
    p_counts int8[], p_shard int2,
    p_event_ids text[], p_event_groups int4[], p_event_types text[], p_event_quantities int8[],
    p_occurred timestamptz[], p_metadata text[], p_received timestamptz
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    rollup_ids int8[];
    inserted text[];
BEGIN
    WITH r AS (
        INSERT INTO usage_rollups (tenant_id, day, shard, stt_words, tts_words, phone_calls, event_count)
        SELECT k.tenant_id, k.day, p_shard, k.stt_words, k.tts_words, k.phone_calls, k.event_count
        FROM UNNEST(p_tenants, p_days, p_stt_words, p_tts_words, p_phone_calls, p_counts) WITH ORDINALITY
             AS k(tenant_id, day, stt_words, tts_words, phone_calls, event_count, ord)
        ORDER BY k.ord
        ON CONFLICT (tenant_id, day, shard) WHERE billed_by IS NULL
        DO UPDATE SET stt_words = usage_rollups.stt_words + EXCLUDED.stt_words,
                      tts_words = usage_rollups.tts_words + EXCLUDED.tts_words,
                      phone_calls = usage_rollups.phone_calls + EXCLUDED.phone_calls,
                      event_count = usage_rollups.event_count + EXCLUDED.event_count
        RETURNING id, tenant_id, day
    )
    SELECT array_agg(r.id ORDER BY k.ord) INTO rollup_ids
    FROM r JOIN UNNEST(p_tenants, p_days) WITH ORDINALITY AS k(tenant_id, day, ord)
         ON r.tenant_id = k.tenant_id AND r.day = k.day;
    -- rollup_ids[g] must be group g's: one missing would shift the rest into other groups' rollups.
    IF cardinality(rollup_ids) IS DISTINCT FROM cardinality(p_tenants) THEN
        RAISE EXCEPTION 'usage_ingest_checked: % rollups for % groups',
            cardinality(rollup_ids), cardinality(p_tenants);
    END IF;

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

    IF cardinality(inserted) < cardinality(p_event_ids) THEN
        UPDATE usage_rollups r
        SET stt_words = r.stt_words - d.stt_words, tts_words = r.tts_words - d.tts_words,
            phone_calls = r.phone_calls - d.phone_calls, event_count = r.event_count - d.n
        FROM (
            SELECT rollup_ids[e.grp + 1] AS id,
                   COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'stt_words'), 0) AS stt_words,
                   COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'tts_words'), 0) AS tts_words,
                   COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = 'phone_calls'), 0) AS phone_calls,
                   COUNT(*) AS n
            FROM UNNEST(p_event_ids, p_event_groups, p_event_types, p_event_quantities)
                 AS e(event_id, grp, usage_type, quantity)
            WHERE e.event_id NOT IN (SELECT UNNEST(inserted))
            GROUP BY 1
        ) d
        WHERE r.id = d.id;
    END IF;
    RETURN inserted;
END
$$;

-- The same for a batch of one event, the usual case of a single event's group commit: statements of one
-- row each, which PostgreSQL plans and runs with less work than the set-based ones above.
CREATE FUNCTION usage_ingest_one(
    p_tenant text, p_day date, p_shard int2, p_event_id text, p_type text, p_quantity int8,
    p_occurred timestamptz, p_metadata text, p_received timestamptz
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    stt int8 := CASE WHEN p_type = 'stt_words' THEN p_quantity ELSE 0 END;
    tts int8 := CASE WHEN p_type = 'tts_words' THEN p_quantity ELSE 0 END;
    calls int8 := CASE WHEN p_type = 'phone_calls' THEN p_quantity ELSE 0 END;
    rollup int8;
    inserted text;
BEGIN
    INSERT INTO usage_rollups (tenant_id, day, shard, stt_words, tts_words, phone_calls, event_count)
    VALUES (p_tenant, p_day, p_shard, stt, tts, calls, 1)
    ON CONFLICT (tenant_id, day, shard) WHERE billed_by IS NULL
    DO UPDATE SET stt_words = usage_rollups.stt_words + EXCLUDED.stt_words,
                  tts_words = usage_rollups.tts_words + EXCLUDED.tts_words,
                  phone_calls = usage_rollups.phone_calls + EXCLUDED.phone_calls,
                  event_count = usage_rollups.event_count + EXCLUDED.event_count
    RETURNING id INTO rollup;

    INSERT INTO usage_events
        (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id, metadata)
    VALUES (p_event_id, p_tenant, p_type, p_quantity, p_occurred, p_received, rollup, p_metadata)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id INTO inserted;

    IF inserted IS NULL THEN
        UPDATE usage_rollups
        SET stt_words = stt_words - stt, tts_words = tts_words - tts, phone_calls = phone_calls - calls,
            event_count = event_count - 1
        WHERE id = rollup;
        RETURN '{}';
    END IF;
    RETURN ARRAY[inserted];
END
$$;
