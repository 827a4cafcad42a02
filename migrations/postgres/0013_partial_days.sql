-- A day that straddles a tenant's free time (a trial or a demo period that starts or ends inside it) is
-- billed event by event: this reads one rollup's events, and those of the rollups merged into it, for the
-- dashboard and the run's claim.
--
-- As a plain statement its plan was the connection's generic one, which after a burst with no ANALYZE
-- takes `rollup_id = $1` for half a percent of the table and joined the merges by a parallel scan of every
-- event (about 75 ms at 10 million events). Here, as in migration 0010's functions, the merged rollups'
-- events are a lateral read per merged id, sequential scans (and with them parallel plans and JIT) are off:
-- only usage_events_rollup_tx answers, and the cost is the rollup's own events.
CREATE FUNCTION usage_rollup_events(p_rollup int8)
RETURNS TABLE (occurred_at timestamptz, usage_type text, quantity int8)
LANGUAGE plpgsql STABLE ROWS 100
SET enable_seqscan = off SET jit = off SET max_parallel_workers_per_gather = 0 AS $$
BEGIN
    RETURN QUERY
    SELECT e.occurred_at, e.usage_type, e.quantity FROM usage_events e WHERE e.rollup_id = p_rollup
    UNION ALL
    SELECT e.occurred_at, e.usage_type, e.quantity
    FROM usage_rollup_merges m
    CROSS JOIN LATERAL (SELECT x.occurred_at, x.usage_type, x.quantity FROM usage_events x
                        WHERE x.rollup_id = m.merged_id OFFSET 0) e
    WHERE m.into_id = p_rollup;
END
$$;
