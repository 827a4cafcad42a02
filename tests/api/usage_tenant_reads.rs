//! PostgreSQL: a reader of one tenant's usage (the dashboard, the run's claim) reads that tenant's rollups
//! and its own events not folded yet, never the other tenants' (migration 0010), with or without
//! statistics, and with a plan cached by its connection: the rows it examines do not grow with the other
//! tenants' tails. And what plan runs changes no figure: the figures equal the events' own sums before
//! any statistics, after ANALYZE and after a fold.

use crate::helpers::{scalar, spawn_app, Store, TestApp};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use thanotopolis_billing::db::Db;
use thanotopolis_billing::domain::{time, BillingPeriod, TenantId};
use thanotopolis_billing::usage::billable;
use thanotopolis_billing::usage::{fold, ingest, NewEvent, UsageType};

const UTC: Tz = chrono_tz::UTC;

fn pool(app: &TestApp) -> &sqlx::PgPool {
    let Db::Postgres(pool) = &app.db else {
        unreachable!("PostgreSQL only")
    };
    pool
}

/// `n` events of `tenant`, `q` words each, spread over the current period's days up to now.
fn events(tenant: &str, prefix: &str, n: usize, q: i64) -> Vec<NewEvent> {
    let now = Utc::now();
    let start = BillingPeriod::containing(now, UTC).bounds(UTC).0;
    let span = (now - start).num_seconds().max(1);
    (0..n)
        .map(|i| NewEvent {
            event_id: format!("{prefix}-{tenant}-{i}"),
            tenant_id: TenantId::parse(tenant).unwrap(),
            usage_type: [
                UsageType::SttWords,
                UsageType::TtsWords,
                UsageType::PhoneCalls,
            ][i % 3],
            quantity: if i % 3 == 2 { 1 } else { q },
            occurred_at: start + Duration::seconds(i as i64 * 7_919 % span),
            metadata: None,
        })
        .collect()
}

async fn store(app: &TestApp, batch: &[NewEvent]) {
    for chunk in batch.chunks(1_000) {
        ingest(&app.db, chunk, time::now(), UTC).await.unwrap();
    }
}

/// What a tenant's events add up to, read from the events themselves: (words, calls).
async fn from_events(app: &TestApp, tenant: &str) -> (i64, i64) {
    let words = scalar(
        &app.db,
        &format!(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM usage_events
             WHERE tenant_id = '{tenant}' AND usage_type <> 'phone_calls'"
        ),
    )
    .await;
    let calls = scalar(
        &app.db,
        &format!(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM usage_events
             WHERE tenant_id = '{tenant}' AND usage_type = 'phone_calls'"
        ),
    )
    .await;
    (words, calls)
}

/// What the dashboard's two reads say for the tenant: recorded this period, and unbilled up to its end.
async fn figures(app: &TestApp, tenant: &str) -> [(i64, i64); 2] {
    let id = TenantId::parse(tenant).unwrap();
    let period = BillingPeriod::containing(Utc::now(), UTC);
    let recorded = billable::recorded(&app.db, &id, period).await.unwrap();
    let unbilled = billable::unbilled(&app.db, &id, period.bounds(UTC).1, UTC)
        .await
        .unwrap();
    let open = unbilled.get(&period).copied().unwrap_or_default();
    [
        (recorded.stt_words + recorded.tts_words, recorded.calls),
        (open.stt_words + open.tts_words, open.calls),
    ]
}

/// The rows `sql` made PostgreSQL examine in `usage_events` and `usage_rollups_folded`, from the
/// transaction's own statistics: (events read by sequential scans, events fetched through indexes,
/// rollups read by sequential scans).
async fn examined(conn: &mut sqlx::PgConnection, sql: &str) -> (i64, i64, i64) {
    // The functions behind pg_stat_xact_user_tables, by the tables' oids (the view reads every
    // relation of the database, which holds many tests' schemas).
    const COUNTERS: &str = "SELECT
        pg_stat_get_xact_tuples_returned('usage_events'::regclass),
        pg_stat_get_xact_tuples_fetched('usage_events'::regclass)
            + (SELECT CAST(COALESCE(SUM(pg_stat_get_xact_tuples_fetched(indexrelid)), 0) AS BIGINT)
               FROM pg_index WHERE indrelid = 'usage_events'::regclass),
        pg_stat_get_xact_tuples_returned('usage_rollups_folded'::regclass)";
    let before: (i64, i64, i64) = sqlx::query_as(COUNTERS)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut *conn).await.unwrap();
    let after: (i64, i64, i64) = sqlx::query_as(COUNTERS)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    (after.0 - before.0, after.1 - before.1, after.2 - before.2)
}

/// Registers acme and eight other tenants; returns the others' ids.
async fn acme_and_others(app: &TestApp) -> Vec<String> {
    app.add_tenant("acme").await;
    let others: Vec<String> = (0..8).map(|i| format!("other-{i}")).collect();
    for t in &others {
        app.add_tenant(t).await;
    }
    others
}

/// Calls the tenant reads and the claim often enough on one connection for PostgreSQL to cache their
/// plans, and checks each call examined the tenant's own tail events and nothing else.
async fn assert_reads_only_its_own_tail(app: &TestApp, tenant: &str, own_tail: i64) {
    let period = BillingPeriod::containing(Utc::now(), UTC);
    let (from, to) = (period.first_day(), period.end_day());
    let reads = [
        format!("SELECT * FROM usage_tenant_rollups('{tenant}', '{from}', '{to}', FALSE)"),
        format!("SELECT * FROM usage_tenant_rollups('{tenant}', '-infinity', '{to}', TRUE)"),
    ];
    let mut tx = pool(app).begin().await.unwrap();
    for round in 0..8 {
        for sql in &reads {
            let (seq_events, fetched, seq_rollups) = examined(&mut tx, sql).await;
            assert_eq!(
                (seq_events, seq_rollups),
                (0, 0),
                "round {round}: {sql} scanned a table"
            );
            assert_eq!(
                fetched, own_tail,
                "round {round}: {sql} fetched events beyond its tenant's tail"
            );
        }
    }
    // The claim reads the same way (rolled back: the test goes on with the rollups open).
    let claim = format!("SELECT * FROM usage_claim_rollups('{tenant}', '{to}', 'probe', now())");
    let (seq_events, fetched, seq_rollups) = examined(&mut tx, &claim).await;
    assert_eq!(
        (seq_events, seq_rollups),
        (0, 0),
        "the claim scanned a table"
    );
    assert_eq!(fetched, own_tail, "the claim fetched other tenants' events");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_tenant_read_examines_its_own_tail_only_whatever_the_statistics() {
    let app = spawn_app(Store::Postgres).await;
    let others = acme_and_others(&app).await;
    // The service in these tests does not fold: everything stays in the tail until the test folds.
    let mine = events("acme", "a", 60, 7);
    store(&app, &mine).await;
    let before = figures(&app, "acme").await;
    let expected = from_events(&app, "acme").await;
    assert_eq!(expected, (40 * 7, 20));
    assert_eq!(before, [expected, expected]);
    assert_reads_only_its_own_tail(&app, "acme", 60).await;

    // Other tenants' tails grow to a hundred times acme's: acme's reads examine the same rows.
    let theirs: Vec<NewEvent> = others.iter().flat_map(|t| events(t, "b", 750, 3)).collect();
    store(&app, &theirs).await;
    assert_eq!(
        scalar(
            &app.db,
            "SELECT CAST(SUM(event_count) AS BIGINT) FROM usage_tail"
        )
        .await,
        60 + 8 * 750,
        "the tail holds every tenant's events"
    );
    assert_eq!(figures(&app, "acme").await, [expected, expected]);
    assert_reads_only_its_own_tail(&app, "acme", 60).await;

    // With statistics, the same rows and the same figures.
    sqlx::query("ANALYZE usage_events")
        .execute(pool(&app))
        .await
        .unwrap();
    sqlx::query("ANALYZE usage_rollups_folded")
        .execute(pool(&app))
        .await
        .unwrap();
    assert_eq!(figures(&app, "acme").await, [expected, expected]);
    assert_reads_only_its_own_tail(&app, "acme", 60).await;

    // Folded: the sums hold everything, no event is read, and the figures do not move.
    for _ in 0..200 {
        fold::fold(&app.db).await.unwrap();
        if scalar(&app.db, "SELECT COUNT(*) FROM usage_tail").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(figures(&app, "acme").await, [expected, expected]);
    assert_reads_only_its_own_tail(&app, "acme", 0).await;
    for t in &others {
        assert_eq!(figures(&app, t).await[0], from_events(&app, t).await);
    }

    // New events after the fold are acme's whole tail again, and are counted.
    let more = events("acme", "c", 9, 5);
    store(&app, &more).await;
    let grown = from_events(&app, "acme").await;
    assert_eq!(grown, (expected.0 + 6 * 5, expected.1 + 3));
    assert_eq!(figures(&app, "acme").await, [grown, grown]);
    assert_reads_only_its_own_tail(&app, "acme", 9).await;
}

/// The claim bills what the reads showed: each event once, in the claimed period, and leaves the
/// other tenants' rollups open.
#[tokio::test]
async fn the_claim_bills_the_tenant_tail_and_nothing_of_the_others() {
    let app = spawn_app(Store::Postgres).await;
    for t in ["acme", "beta"] {
        app.add_tenant(t).await;
    }
    store(&app, &events("acme", "a", 30, 4)).await;
    store(&app, &events("beta", "b", 300, 2)).await;
    let expected = from_events(&app, "acme").await;
    let period = BillingPeriod::containing(Utc::now(), UTC);
    let end: DateTime<Utc> = period.bounds(UTC).1;
    let claimed =
        billable::claim_unbilled(&app.db, &TenantId::parse("acme").unwrap(), end, UTC, "k")
            .await
            .unwrap();
    let totals = claimed[&period];
    assert_eq!(
        (totals.stt_words + totals.tts_words, totals.calls),
        expected
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT COUNT(*) FROM usage_rollups_folded WHERE tenant_id = 'beta' AND billed_by IS NOT NULL"
        )
        .await,
        0
    );
    // Nothing of acme's is left to bill; beta's is all there.
    assert_eq!(figures(&app, "acme").await[1], (0, 0));
    assert_eq!(figures(&app, "acme").await[0], expected);
    let beta = from_events(&app, "beta").await;
    assert_eq!(figures(&app, "beta").await, [beta, beta]);
}

/// Without statistics the planner may estimate a tenant's read at thousands of rows, past
/// `jit_above_cost`, and compile it on every call (10-80 ms for a 1 ms read); the service's connections
/// have JIT off, and a read with such an estimate runs without compiling.
#[tokio::test]
async fn the_service_connections_never_compile_a_read() {
    let app = spawn_app(Store::Postgres).await;
    let mut conn = pool(&app).acquire().await.unwrap();
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(jit, "off");
    // An estimate far past the threshold: the plan says so, and no JIT section follows.
    sqlx::query("SET jit_above_cost = 0")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, FORMAT TEXT) SELECT occurred_at, usage_type, quantity FROM usage_events WHERE rollup_id = 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(!plan.iter().any(|l| l.contains("JIT")), "{plan:#?}");
    sqlx::query("RESET jit_above_cost")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// A day that straddles free time (here a demo period that starts in it) is billed event by event: its
/// read (`usage_rollup_events`, migration 0013) fetches that rollup's events and those of a rollup
/// merged into it, and scans nothing, before and after statistics, with the plan its connection cached;
/// the other tenants' events on the same day are never read, and the figures are the events' own.
#[tokio::test]
async fn a_day_straddling_free_time_reads_only_its_own_events() {
    let app = spawn_app(Store::Postgres).await;
    let others = acme_and_others(&app).await;
    let today = Utc::now().date_naive();
    let midnight = thanotopolis_billing::domain::local_midnight(today, UTC);
    let on_today = |tenant: &str, prefix: &str, n: usize| -> Vec<NewEvent> {
        (0..n)
            .map(|i| NewEvent {
                event_id: format!("{prefix}-{tenant}-{i}"),
                tenant_id: TenantId::parse(tenant).unwrap(),
                usage_type: [UsageType::SttWords, UsageType::PhoneCalls][i % 2],
                quantity: if i % 2 == 1 { 1 } else { 7 },
                // Every ten minutes from midnight: the first thirty before the demo starts at 05:00.
                occurred_at: midnight + Duration::minutes(10 * (i as i64 % 60)),
                metadata: None,
            })
            .collect()
    };
    store(&app, &on_today("acme", "a", 60)).await;
    for t in &others {
        store(&app, &on_today(t, "b", 750)).await;
    }
    // A second copy of acme's day (as concurrent ingests wrote before migration 0006) with ten events
    // of its own, merged into the first: its events now count through usage_rollup_merges.
    let mut tx = pool(&app).begin().await.unwrap();
    let shard: i64 = sqlx::query_scalar(
        "INSERT INTO usage_rollups_folded (tenant_id, day, shard) VALUES ('acme', $1, 1) RETURNING id",
    )
    .bind(today)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO usage_events (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id)
         SELECT 'shard-' || i, 'acme', 'tts_words', 11, $1 + make_interval(mins => 60 * i + 5), now(), $2
         FROM generate_series(0, 9) i",
    )
    .bind(midnight)
    .bind(shard)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let merged = thanotopolis_billing::usage::compact::compact(&app.db, today.succ_opt().unwrap())
        .await
        .unwrap();
    assert_eq!(merged, 1, "the second copy is merged into the first");
    let rollup = scalar(
        &app.db,
        "SELECT id FROM usage_rollups_folded WHERE tenant_id = 'acme' AND billed_by IS NULL",
    )
    .await;

    let demo_start = midnight + Duration::hours(5);
    sqlx::query("INSERT INTO tenant_demo_periods (tenant_id, started_at) VALUES ('acme', $1)")
        .bind(demo_start)
        .execute(pool(&app))
        .await
        .unwrap();
    let all = from_events(&app, "acme").await;
    assert_eq!(all, (30 * 7 + 10 * 11, 30));
    // Billable: the events before the demo started (fifteen of each type, and the merged copy's
    // first five, 00:05 to 04:05).
    let billable = (15 * 7 + 5 * 11, 15);
    let expected = [all, billable];

    let read = format!("SELECT * FROM usage_rollup_events({rollup})");
    for statistics in [false, true] {
        if statistics {
            for table in [
                "usage_events",
                "usage_rollups_folded",
                "usage_rollup_merges",
            ] {
                sqlx::query(&format!("ANALYZE {table}"))
                    .execute(pool(&app))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(figures(&app, "acme").await, expected);
        let mut tx = pool(&app).begin().await.unwrap();
        for round in 0..8 {
            let (seq_events, fetched, _) = examined(&mut tx, &read).await;
            assert_eq!(
                seq_events, 0,
                "round {round}: the day's read scanned events"
            );
            assert_eq!(
                fetched, 70,
                "round {round}: the day's read fetched more than its own and its merged copy's events"
            );
        }
        tx.rollback().await.unwrap();
    }
    // The run's claim bills the same (it reads the day the same way); the same key again reads what
    // the claim recorded on the rollup: the billed part, not the whole.
    let period = BillingPeriod::containing(Utc::now(), UTC);
    let acme = TenantId::parse("acme").unwrap();
    let claim = || billable::claim_unbilled(&app.db, &acme, period.bounds(UTC).1, UTC, "k");
    let claimed = claim().await.unwrap();
    let totals = claimed[&period];
    assert_eq!(
        (totals.stt_words + totals.tts_words, totals.calls),
        billable
    );
    assert_eq!(claim().await.unwrap(), claimed);
}
