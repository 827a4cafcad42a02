//! PostgreSQL folds stored events into their rollups after the request (`usage::fold`): the figures are
//! the folded sums plus the events not folded yet, the same whenever folds run; a fold that dies half
//! way changes nothing; a claim waits for an ingest in flight of its tenant and bills its events; folds,
//! claims and ingests running at once lose and double nothing.

use crate::helpers::{scalar, spawn_app, Store, TestApp};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use thanotopolis_billing::db::Db;
use thanotopolis_billing::domain::{time, BillingPeriod, TenantId};
use thanotopolis_billing::usage::billable::{self, ByPeriod};
use thanotopolis_billing::usage::rating::UsageTotals;
use thanotopolis_billing::usage::{fold, ingest, NewEvent, UsageType};

const UTC: Tz = chrono_tz::UTC;

fn event(id: &str, tenant: &str, q: i64, at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        event_id: id.to_owned(),
        tenant_id: TenantId::parse(tenant).unwrap(),
        usage_type: UsageType::SttWords,
        quantity: q,
        occurred_at: at,
        metadata: None,
    }
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn stt(q: i64) -> UsageTotals {
    UsageTotals {
        stt_words: q,
        tts_words: 0,
        calls: 0,
    }
}

fn pool(app: &TestApp) -> &sqlx::PgPool {
    let Db::Postgres(pool) = &app.db else {
        unreachable!("PostgreSQL only")
    };
    pool
}

/// Folds until no event is left unfolded. A fold stops at the oldest transaction running on the
/// server, so another database's transaction can hold it back for a moment.
async fn fold_all(db: &Db) {
    for _ in 0..200 {
        fold::fold(db).await.unwrap();
        if scalar(db, "SELECT COUNT(*) FROM usage_tail").await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("events still unfolded after 10 s");
}

/// What the stored sums alone say (no tail).
async fn folded(db: &Db) -> i64 {
    scalar(
        db,
        "SELECT CAST(COALESCE(SUM(stt_words), 0) AS BIGINT) FROM usage_rollups_folded",
    )
    .await
}

#[tokio::test]
async fn figures_are_the_folded_sums_plus_the_tail() {
    let app = spawn_app(Store::Postgres).await;
    app.add_tenant("acme").await;
    let period = BillingPeriod::containing(Utc::now(), UTC);
    let (_, end) = period.bounds(UTC);
    let now = Utc::now();
    ingest(&app.db, &[event("a", "acme", 5, now)], time::now(), UTC)
        .await
        .unwrap();
    // Read right after the answer, before any fold: the event is counted, from the tail.
    assert_eq!(folded(&app.db).await, 0);
    let before = billable::recorded(&app.db, &acme(), period).await.unwrap();
    assert_eq!(before, stt(5));
    fold_all(&app.db).await;
    assert_eq!(folded(&app.db).await, 5);
    assert_eq!(
        billable::recorded(&app.db, &acme(), period).await.unwrap(),
        before
    );
    // Part folded, part tail: both count once.
    let batch: Vec<NewEvent> = (0..50)
        .map(|i| event(&format!("b{i}"), "acme", 2, now))
        .collect();
    ingest(&app.db, &batch, time::now(), UTC).await.unwrap();
    assert_eq!(folded(&app.db).await, 5);
    assert_eq!(
        billable::recorded(&app.db, &acme(), period).await.unwrap(),
        stt(105)
    );
    assert_eq!(
        billable::unbilled(&app.db, &acme(), end, UTC)
            .await
            .unwrap(),
        BTreeMap::from([(period, stt(105))])
    );
    fold_all(&app.db).await;
    assert_eq!(folded(&app.db).await, 105);
    // Folding again with nothing new changes nothing.
    fold::fold(&app.db).await.unwrap();
    assert_eq!(folded(&app.db).await, 105);
    crate::helpers::assert_rollups_hold_their_events(&app.db).await;
}

/// A fold whose session dies before it commits (as when PostgreSQL's backend is killed) leaves the
/// sums and the mark as they were; the next fold folds each event once.
#[tokio::test]
async fn a_fold_cut_short_changes_nothing() {
    let app = spawn_app(Store::Postgres).await;
    app.add_tenant("acme").await;
    let batch: Vec<NewEvent> = (0..40)
        .map(|i| event(&format!("e{i}"), "acme", 3, Utc::now()))
        .collect();
    ingest(&app.db, &batch, time::now(), UTC).await.unwrap();
    let mark = || {
        scalar(
            &app.db,
            "SELECT CAST(CAST(folded_through AS TEXT) AS BIGINT) FROM usage_fold",
        )
    };
    let mark_before = mark().await;

    let mut doomed = pool(&app).acquire().await.unwrap().detach();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut doomed)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut doomed).await.unwrap();
    // Inside the doomed transaction the fold has happened (retried while another transaction on the
    // server holds the mark back).
    let mut seen = 0;
    for _ in 0..200 {
        sqlx::query("SELECT usage_fold()")
            .execute(&mut doomed)
            .await
            .unwrap();
        seen = sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(SUM(stt_words), 0) AS BIGINT) FROM usage_rollups_folded",
        )
        .fetch_one(&mut doomed)
        .await
        .unwrap();
        if seen == 120 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 120, "the fold ran inside the transaction");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(pool(&app))
        .await
        .unwrap();
    drop(doomed);

    assert_eq!(
        folded(&app.db).await,
        0,
        "nothing of the fold was committed"
    );
    assert_eq!(mark().await, mark_before);
    assert_eq!(
        billable::recorded(&app.db, &acme(), BillingPeriod::containing(Utc::now(), UTC))
            .await
            .unwrap(),
        stt(120)
    );
    fold_all(&app.db).await;
    assert_eq!(folded(&app.db).await, 120);
    assert!(mark().await > mark_before);
    crate::helpers::assert_rollups_hold_their_events(&app.db).await;
}

/// An ingest in flight holds its tenants' buckets: a claim of the tenant waits for it to commit and
/// bills its events, whether or not they were folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_an_ingest_in_flight_and_bills_it() {
    let app = spawn_app(Store::Postgres).await;
    app.add_tenant("acme").await;
    let last = BillingPeriod::containing(Utc::now(), UTC).prev();
    let (start, end) = last.bounds(UTC);
    let at = start + Duration::days(2);
    ingest(&app.db, &[event("early", "acme", 7, at)], time::now(), UTC)
        .await
        .unwrap();
    fold_all(&app.db).await;

    // An ingest stopped half way: its bucket held, the rollup's id read, the event stored, not
    // committed.
    let mut in_flight = pool(&app).begin().await.unwrap();
    sqlx::query("SELECT usage_hold_buckets($1)")
        .bind(vec![thanotopolis_billing::usage::ingest::bucket("acme")])
        .execute(&mut *in_flight)
        .await
        .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT usage_rollup_ids($1, $2)")
        .bind(vec!["acme"])
        .bind(vec![at.date_naive()])
        .fetch_one(&mut *in_flight)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO usage_events (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id)
         VALUES ('late', 'acme', 'stt_words', 100, $1, now(), $2)",
    )
    .bind(at)
    .bind(ids[0])
    .execute(&mut *in_flight)
    .await
    .unwrap();

    let claim = {
        let db = app.db.clone();
        tokio::spawn(async move {
            billable::claim_unbilled(&db, &acme(), end, UTC, "run:flight")
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "the claim waits for the ingest");
    in_flight.commit().await.unwrap();
    let claimed = claim.await.unwrap();
    assert_eq!(claimed, BTreeMap::from([(last, stt(107))]));
    fold_all(&app.db).await;
    assert_eq!(
        scalar(
            &app.db,
            "SELECT CAST(SUM(billed_stt_words) AS BIGINT) FROM usage_rollups_folded WHERE billed_by = 'run:flight'"
        )
        .await,
        107
    );
    assert!(billable::unbilled(&app.db, &acme(), end, UTC)
        .await
        .unwrap()
        .is_empty());
    crate::helpers::assert_rollups_hold_their_events(&app.db).await;
}

/// Writers ingest (with duplicates across writers) while a folder folds without pause and claims run
/// with fresh keys: every event counts once, in its rollup, and claimed plus open is all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_claims_and_ingests_at_once_lose_and_double_nothing() {
    let app = spawn_app(Store::Postgres).await;
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    let current = BillingPeriod::containing(Utc::now(), UTC);
    let (_, end) = current.bounds(UTC);
    let base = current.prev().bounds(UTC).0 + Duration::days(10);
    const WRITERS: usize = 4;
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 50;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let folder = {
        let (db, stop) = (app.db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut folds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fold::fold(&db).await.unwrap();
                folds += 1;
            }
            folds
        })
    };
    let claimer = {
        let (db, stop) = (app.db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut claimed = Vec::new();
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for tenant in ["acme", "beta"] {
                    let t = TenantId::parse(tenant).unwrap();
                    claimed.push(
                        billable::claim_unbilled(&db, &t, end, UTC, &format!("c{k}-{tenant}"))
                            .await
                            .unwrap(),
                    );
                }
                k += 1;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            claimed
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let db = app.db.clone();
        writers.push(tokio::spawn(async move {
            let mut accepted = 0;
            for b in 0..BATCHES {
                // Half the batches big enough for COPY, half through the checked insert.
                let size = if b % 2 == 0 { PER_BATCH } else { 5 };
                let batch: Vec<NewEvent> = (0..size)
                    .map(|i| {
                        let owner = if i % 2 == 0 { w } else { (w + 1) % WRITERS };
                        let n = b * PER_BATCH + i;
                        let tenant = if n % 3 == 0 { "beta" } else { "acme" };
                        let at =
                            base + Duration::days((n % 4) as i64) + Duration::minutes(n as i64);
                        event(&format!("w{owner}-{n}"), tenant, (n % 7 + 1) as i64, at)
                    })
                    .collect();
                accepted += ingest(&db, &batch, time::now(), UTC)
                    .await
                    .unwrap()
                    .accepted;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for w in writers {
        accepted += w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(folder.await.unwrap() > 0);
    let claims = claimer.await.unwrap();

    let events = scalar(&app.db, "SELECT COUNT(*) FROM usage_events").await;
    assert_eq!(accepted as i64, events);
    crate::helpers::assert_rollups_hold_their_events(&app.db).await;
    let total = scalar(
        &app.db,
        "SELECT CAST(SUM(quantity) AS BIGINT) FROM usage_events",
    )
    .await;
    let billed = scalar(
        &app.db,
        "SELECT CAST(COALESCE(SUM(billed_stt_words), 0) AS BIGINT) FROM usage_rollups_folded
         WHERE billed_by IS NOT NULL",
    )
    .await;
    let sum = |m: &ByPeriod| m.values().map(|t| t.stt_words).sum::<i64>();
    assert_eq!(claims.iter().map(sum).sum::<i64>(), billed);
    let mut left = 0;
    for tenant in ["acme", "beta"] {
        let t = TenantId::parse(tenant).unwrap();
        left += sum(&billable::unbilled(&app.db, &t, end, UTC).await.unwrap());
    }
    assert_eq!(billed + left, total);
    // Once everything is folded, the stored sums alone hold every event.
    fold_all(&app.db).await;
    assert_eq!(folded(&app.db).await, total);
    crate::helpers::assert_rollups_hold_their_events(&app.db).await;
}
