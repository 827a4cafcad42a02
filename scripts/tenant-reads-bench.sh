#!/usr/bin/env bash
# A tenant's reads right after a burst of ingestion, with no statistics (autovacuum off, no ANALYZE): the
# dashboard's two reads (recorded this month, open rollups) and the run's claim (rolled back), for a
# random tenant, by pgbench with prepared statements (generic plans, as the service's connections keep
# them), each as of migration 0010 and as before it (the view usage_rollups with the tail of every tenant).
#
#   scripts/tenant-reads-bench.sh [EVENTS=10000000] [TAIL=200000] [SECONDS=20]
#
# ANALYZE=1 runs ANALYZE after the load, for the figures with fresh statistics.
#
# EVENTS are folded (a burst the fold kept up with), TAIL more are above the mark (the last seconds of
# the burst). Runs in the database tenant_reads_bench on PGHOST (127.0.0.1), recreated each time. Prints
# the latency percentiles of each read.
set -euo pipefail
EVENTS=${1:-10000000}
TAIL=${2:-200000}
SECONDS_EACH=${3:-20}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
DB=tenant_reads_bench
cd "$(dirname "$0")/.."
psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
for f in migrations/postgres/*.sql; do psql -qX -1 -v ON_ERROR_STOP=1 -d $DB -f "$f" >/dev/null; done
psql -qX -v ON_ERROR_STOP=1 -d $DB <<SQL
SET synchronous_commit = off;
INSERT INTO tenants (id, name, subdomain, created_at, updated_at)
SELECT 'tenant-' || lpad(t::text, 4, '0'), 'Org ' || t, 'org' || t, now(), now() FROM generate_series(0, 999) t;
-- One rollup per tenant and day of the last 30 (ids 1 + tenant * 30 + day).
INSERT INTO usage_rollups_folded (id, tenant_id, day, shard)
SELECT 1 + t * 30 + d, 'tenant-' || lpad(t::text, 4, '0'), current_date - 29 + d, 0
FROM generate_series(0, 999) t, generate_series(0, 29) d;
SELECT setval(pg_get_serial_sequence('usage_rollups_folded', 'id'), 30000) \g /dev/null
ALTER TABLE usage_events DROP CONSTRAINT usage_events_pkey;
DROP INDEX usage_events_rollup_tx;
DROP INDEX usage_events_tx;
INSERT INTO usage_events (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id)
SELECT 'burst-' || i, 'tenant-' || lpad((i % 1000)::text, 4, '0'),
       (ARRAY['stt_words', 'tts_words', 'phone_calls'])[(i / 7) % 3 + 1], 1 + i % 40,
       (current_date - 29 + (i / 1000) % 30)::timestamp AT TIME ZONE 'UTC', now(), 1 + (i % 1000) * 30 + (i / 1000) % 30
FROM generate_series(0, $EVENTS - 1) i;
ALTER TABLE usage_events ADD PRIMARY KEY (event_id);
CREATE INDEX usage_events_rollup_tx ON usage_events (rollup_id, tx);
CREATE INDEX usage_events_tx ON usage_events (tx);
-- Folded: the sums hold them, the mark is past them.
UPDATE usage_rollups_folded r SET stt_words = s.stt, tts_words = s.tts, phone_calls = s.calls, event_count = s.n
FROM (SELECT rollup_id, SUM(quantity) FILTER (WHERE usage_type = 'stt_words') AS stt,
             SUM(quantity) FILTER (WHERE usage_type = 'tts_words') AS tts,
             SUM(quantity) FILTER (WHERE usage_type = 'phone_calls') AS calls, COUNT(*) AS n
      FROM usage_events GROUP BY 1) s
WHERE r.id = s.rollup_id;
UPDATE usage_fold SET folded_through = pg_current_xact_id();
SQL
# The tail: the burst's last events, not folded yet (a transaction after the mark).
psql -qX -v ON_ERROR_STOP=1 -d $DB <<SQL
INSERT INTO usage_events (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id)
SELECT 'tail-' || i, 'tenant-' || lpad((i % 1000)::text, 4, '0'), 'stt_words', 3, now(), now(),
       1 + (i % 1000) * 30 + 29
FROM generate_series(0, $TAIL - 1) i;
SQL
if [ "${ANALYZE:-0}" = 1 ]; then psql -qX -d $DB -c ANALYZE; fi
psql -qXAt -d $DB -c "SELECT 'statistics: ' || COALESCE(MAX(last_analyze)::text, 'none') || ', events ' || (SELECT COUNT(*) FROM usage_events) || ', tail ' || (SELECT SUM(event_count) FROM usage_tail) FROM pg_stat_user_tables"

month_start="date_trunc('month', current_date)::date"
next_month="(date_trunc('month', current_date) + interval '1 month')::date"
scripts=$(mktemp -d)
trap 'rm -rf "$scripts"' EXIT
cat >"$scripts/dashboard_0010.sql" <<SQL
\set t random(0, 999)
SELECT SUM(stt_words), SUM(tts_words), SUM(phone_calls) FROM usage_tenant_rollups('tenant-' || lpad(:t::text, 4, '0'), $month_start, $next_month, FALSE);
SELECT id, day, stt_words, tts_words, phone_calls FROM usage_tenant_rollups('tenant-' || lpad(:t::text, 4, '0'), '-infinity', $next_month, TRUE);
SQL
cat >"$scripts/dashboard_0006.sql" <<SQL
\set t random(0, 999)
SELECT SUM(stt_words), SUM(tts_words), SUM(phone_calls) FROM usage_rollups WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0') AND day >= $month_start AND day < $next_month;
SELECT id, day, stt_words, tts_words, phone_calls FROM usage_rollups WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0') AND billed_by IS NULL AND day < $next_month;
SQL
cat >"$scripts/claim_0010.sql" <<SQL
\set t random(0, 999)
BEGIN;
SELECT pg_advisory_xact_lock(7301, 0);
SELECT 1 FROM usage_fold FOR SHARE;
SELECT * FROM usage_claim_rollups('tenant-' || lpad(:t::text, 4, '0'), $next_month, 'bench', now());
ROLLBACK;
SQL
cat >"$scripts/claim_0006.sql" <<SQL
\set t random(0, 999)
BEGIN;
SELECT pg_advisory_xact_lock(7301, 0);
SELECT 1 FROM usage_fold FOR SHARE;
UPDATE usage_rollups_folded r SET billed_by = 'bench', billed_at = now(), billed_stt_words = v.stt_words,
    billed_tts_words = v.tts_words, billed_phone_calls = v.phone_calls
FROM usage_rollups v
WHERE v.id = r.id AND v.tenant_id = 'tenant-' || lpad(:t::text, 4, '0')
  AND r.id IN (SELECT id FROM usage_rollups_folded WHERE tenant_id = 'tenant-' || lpad(:t::text, 4, '0')
               AND day < $next_month AND billed_by IS NULL ORDER BY day, shard FOR UPDATE)
RETURNING r.id;
ROLLBACK;
SQL

measure() {
    local name=$1
    rm -f "$scripts"/pgbench_log.*
    (cd "$scripts" && pgbench -n -M prepared -c 1 -T "$SECONDS_EACH" -l -f "$name.sql" $DB >/dev/null 2>&1)
    awk '{print $3}' "$scripts"/pgbench_log.* | sort -n | awk -v name="$name" -v machine="$(cut -d' ' -f1-3 /proc/loadavg)" '
        { v[NR] = $1 }
        END { printf "%-16s n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms (load %s)\n", name, NR,
              v[int(NR * 0.5)] / 1000, v[int(NR * 0.99)] / 1000, v[NR] / 1000, machine }'
}

# Before migration 0010's change to the global tail's function (it reads the tail of every tenant
# through a plan that may scan the table): reset its settings, measure the old reads, then restore.
psql -qX -d $DB -c "ALTER FUNCTION usage_tail_sums() RESET ALL"
measure dashboard_0006
measure claim_0006
psql -qX -d $DB -c "ALTER FUNCTION usage_tail_sums() SET enable_seqscan = off SET jit = off"
measure dashboard_0010
measure claim_0010
