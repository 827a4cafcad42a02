//! The monthly run's claim on usage (`usage::billable`): exactly once under concurrent ingestion,
//! idempotent by key, and late usage waits in a new bucket for the next run.

use crate::helpers::{scalar, TestApp};
use crate::store_tests;
use crate::usage::insert_subscription;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use thanotopolis_billing::domain::{time, BillingPeriod, TenantId};
use thanotopolis_billing::usage::billable::{self, ByPeriod};
use thanotopolis_billing::usage::rating::UsageTotals;
use thanotopolis_billing::usage::{compact, fold};
use thanotopolis_billing::usage::{ingest, NewEvent, UsageType};

store_tests!(
    a_claim_is_idempotent_and_late_usage_waits_for_the_next,
    claims_store_what_is_billable_after_trials_and_demos,
    concurrent_ingestion_during_claims_loses_and_doubles_nothing,
    racing_claims_with_one_key_take_once,
);

const UTC: Tz = chrono_tz::UTC;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn event(id: &str, tenant: &str, t: UsageType, q: i64, at: DateTime<Utc>) -> NewEvent {
    NewEvent {
        event_id: id.to_owned(),
        tenant_id: TenantId::parse(tenant).unwrap(),
        usage_type: t,
        quantity: q,
        occurred_at: at,
        metadata: None,
    }
}

async fn put(app: &TestApp, events: &[NewEvent]) -> u64 {
    ingest(&app.db, events, time::now(), UTC)
        .await
        .unwrap()
        .accepted
}

fn totals(stt: i64, tts: i64, calls: i64) -> UsageTotals {
    UsageTotals {
        stt_words: stt,
        tts_words: tts,
        calls,
    }
}

async fn a_claim_is_idempotent_and_late_usage_waits_for_the_next(app: TestApp) {
    app.add_tenant("acme").await;
    let current = BillingPeriod::containing(Utc::now(), UTC);
    let last = current.prev();
    let (last_start, last_end) = last.bounds(UTC);
    let (_, current_end) = current.bounds(UTC);
    let in_last = last_start + Duration::days(3);
    put(
        &app,
        &[
            event("a", "acme", UsageType::SttWords, 1_000, in_last),
            event(
                "b",
                "acme",
                UsageType::TtsWords,
                500,
                in_last + Duration::days(1),
            ),
            event("c", "acme", UsageType::PhoneCalls, 1, in_last),
            event("now", "acme", UsageType::SttWords, 7, Utc::now()),
        ],
    )
    .await;

    let key = format!("run:{last}:acme");
    let first = billable::claim_unbilled(&app.db, &acme(), last_end, UTC, &key)
        .await
        .unwrap();
    assert_eq!(first, BTreeMap::from([(last, totals(1_000, 500, 1))]));

    // Usage for the claimed days arrives late: it opens a new bucket that the same key does not take.
    put(
        &app,
        &[event("late", "acme", UsageType::PhoneCalls, 1, in_last)],
    )
    .await;
    let again = billable::claim_unbilled(&app.db, &acme(), last_end, UTC, &key)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        scalar(
            &app.db,
            "SELECT COUNT(*) FROM usage_rollups WHERE billed_by IS NULL"
        )
        .await,
        2,
        "the late call's bucket and today's stay open"
    );
    let waiting = billable::unbilled(&app.db, &acme(), last_end, UTC)
        .await
        .unwrap();
    assert_eq!(waiting, BTreeMap::from([(last, totals(0, 0, 1))]));

    // The next run takes it as late usage, with the new period's own.
    let next = billable::claim_unbilled(&app.db, &acme(), current_end, UTC, "run:next:acme")
        .await
        .unwrap();
    assert_eq!(
        next,
        BTreeMap::from([(last, totals(0, 0, 1)), (current, totals(7, 0, 0))])
    );
    assert!(billable::unbilled(&app.db, &acme(), current_end, UTC)
        .await
        .unwrap()
        .is_empty());
    // A claim with nothing to claim returns nothing.
    let empty: ByPeriod =
        billable::claim_unbilled(&app.db, &acme(), current_end, UTC, "run:x:acme")
            .await
            .unwrap();
    assert!(empty.is_empty());
}

async fn claims_store_what_is_billable_after_trials_and_demos(app: TestApp) {
    app.add_tenant("acme").await;
    let last = BillingPeriod::containing(Utc::now(), UTC).prev();
    let (start, end) = last.bounds(UTC);
    // The trial ends at noon on the period's 5th day.
    let trial_end = start + Duration::days(4) + Duration::hours(12);
    insert_subscription(&app, "acme", "sub_1", "active", Some(trial_end)).await;
    put(
        &app,
        &[
            event(
                "d2",
                "acme",
                UsageType::SttWords,
                100,
                start + Duration::days(1),
            ),
            event(
                "d5-am",
                "acme",
                UsageType::SttWords,
                40,
                trial_end - Duration::hours(1),
            ),
            event("d5-pm", "acme", UsageType::SttWords, 60, trial_end),
            event(
                "d5-pm2",
                "acme",
                UsageType::SttWords,
                5,
                trial_end + Duration::hours(3),
            ),
            event(
                "d9",
                "acme",
                UsageType::TtsWords,
                300,
                start + Duration::days(8),
            ),
        ],
    )
    .await;
    let unbilled = billable::unbilled(&app.db, &acme(), end, UTC)
        .await
        .unwrap();
    assert_eq!(unbilled, BTreeMap::from([(last, totals(65, 300, 0))]));
    let claimed = billable::claim_unbilled(&app.db, &acme(), end, UTC, "k")
        .await
        .unwrap();
    assert_eq!(claimed, unbilled);
    // Every rollup is claimed, the wholly free one with zero.
    assert_eq!(
        scalar(
            &app.db,
            "SELECT COUNT(*) FROM usage_rollups WHERE billed_by = 'k'
             AND billed_stt_words + billed_tts_words + billed_phone_calls = 0"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT CAST(SUM(billed_stt_words + billed_tts_words + billed_phone_calls) AS BIGINT)
             FROM usage_rollups WHERE billed_by = 'k'"
        )
        .await,
        365
    );
    assert_eq!(
        scalar(
            &app.db,
            "SELECT COUNT(*) FROM usage_rollups WHERE billed_by IS NULL"
        )
        .await,
        0
    );
}

/// Many writers ingest (with duplicates across writers) while claims run with fresh keys and past days'
/// shards are merged. In the end
/// every event is in exactly one rollup, each rollup's quantity is the sum of its events, and the claims
/// plus what is still open add up to exactly what was ingested.
async fn concurrent_ingestion_during_claims_loses_and_doubles_nothing(app: TestApp) {
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    let current = BillingPeriod::containing(Utc::now(), UTC);
    let (_, end) = current.bounds(UTC);
    let base = current.prev().bounds(UTC).0 + Duration::days(10);
    const WRITERS: usize = 6;
    const BATCHES: usize = 15;
    const PER_BATCH: usize = 40;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let db = app.db.clone();
        writers.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            for b in 0..BATCHES {
                let batch: Vec<NewEvent> = (0..PER_BATCH)
                    .map(|i| {
                        // Writers w and w+1 share half their ids: duplicates race across transactions.
                        let owner = if i % 2 == 0 { w } else { (w + 1) % WRITERS };
                        let n = b * PER_BATCH + i;
                        let tenant = if n % 3 == 0 { "beta" } else { "acme" };
                        let kind = [
                            UsageType::SttWords,
                            UsageType::TtsWords,
                            UsageType::PhoneCalls,
                        ][n % 3];
                        let q = if kind == UsageType::PhoneCalls {
                            1
                        } else {
                            (n % 7 + 1) as i64
                        };
                        let at =
                            base + Duration::days((n % 4) as i64) + Duration::minutes(n as i64);
                        event(&format!("w{owner}-{n}"), tenant, kind, q, at)
                    })
                    .collect();
                accepted += ingest(&db, &batch, time::now(), UTC)
                    .await
                    .unwrap()
                    .accepted;
                tokio::task::yield_now().await;
            }
            accepted
        }));
    }
    let today = Utc::now().date_naive();
    let claimer = {
        let db = app.db.clone();
        tokio::spawn(async move {
            let mut claimed: Vec<ByPeriod> = Vec::new();
            for k in 0..20 {
                for tenant in ["acme", "beta"] {
                    let t = TenantId::parse(tenant).unwrap();
                    let key = format!("claim-{k}-{tenant}");
                    claimed.push(
                        billable::claim_unbilled(&db, &t, end, UTC, &key)
                            .await
                            .unwrap(),
                    );
                    // A repeated claim returns the same and takes nothing new.
                    let again = billable::claim_unbilled(&db, &t, end, UTC, &key)
                        .await
                        .unwrap();
                    assert_eq!(&again, claimed.last().unwrap());
                }
                // Past days' shards are merged meanwhile, as `serve` does.
                compact::compact(&db, today).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            claimed
        })
    };
    let mut accepted = 0;
    for w in writers {
        accepted += w.await.unwrap();
    }
    let claims = claimer.await.unwrap();

    // Events are unique by id: each writer pair shares ids, so the distinct count is known.
    let events = scalar(&app.db, "SELECT COUNT(*) FROM usage_events").await;
    assert_eq!(accepted as i64, events);
    assert_eq!(events, (WRITERS * BATCHES * PER_BATCH) as i64);
    crate::helpers::assert_rollups_hold_their_events(&app.db).await;
    let total = scalar(
        &app.db,
        "SELECT CAST(SUM(quantity) AS BIGINT) FROM usage_events",
    )
    .await;
    let billed = scalar(
        &app.db,
        "SELECT CAST(SUM(billed_stt_words + billed_tts_words + billed_phone_calls) AS BIGINT)
         FROM usage_rollups WHERE billed_by IS NOT NULL",
    )
    .await;
    let open = scalar(
        &app.db,
        "SELECT CAST(SUM(stt_words + tts_words + phone_calls) AS BIGINT) FROM usage_rollups
         WHERE billed_by IS NULL",
    )
    .await;
    assert_eq!(billed + open, total);
    // What the claims returned is exactly what they stored, and with what is left adds up to all.
    let sum = |m: &ByPeriod| {
        m.values()
            .map(|t| t.stt_words + t.tts_words + t.calls)
            .sum::<i64>()
    };
    let claimed: i64 = claims.iter().map(sum).sum();
    assert_eq!(claimed, billed);
    let mut left = 0;
    for tenant in ["acme", "beta"] {
        let t = TenantId::parse(tenant).unwrap();
        left += sum(&billable::unbilled(&app.db, &t, end, UTC).await.unwrap());
    }
    assert_eq!(left, open);
    assert_eq!(claimed + left, total);
}

/// Two runs racing with the same key (two replicas, say): one claims, the other returns the same totals.
async fn racing_claims_with_one_key_take_once(app: TestApp) {
    app.add_tenant("acme").await;
    let last = BillingPeriod::containing(Utc::now(), UTC).prev();
    let (start, end) = last.bounds(UTC);
    let events: Vec<NewEvent> = (0..300)
        .map(|i| {
            let at = start + Duration::hours(i);
            event(&format!("e{i}"), "acme", UsageType::SttWords, 10, at)
        })
        .collect();
    put(&app, &events).await;
    let claims = (0..4).map(|_| {
        let db = app.db.clone();
        tokio::spawn(async move {
            billable::claim_unbilled(&db, &acme(), end, UTC, "run:same")
                .await
                .unwrap()
        })
    });
    let mut results = Vec::new();
    for c in claims.collect::<Vec<_>>() {
        results.push(c.await.unwrap());
    }
    let expected = BTreeMap::from([(last, totals(3_000, 0, 0))]);
    assert!(results.iter().all(|r| *r == expected), "{results:?}");
    assert_eq!(
        scalar(
            &app.db,
            "SELECT CAST(SUM(billed_stt_words + billed_tts_words + billed_phone_calls) AS BIGINT)
             FROM usage_rollups"
        )
        .await,
        3_000
    );
}

/// PostgreSQL: an ingest never waits on a rollup's row (held here as a fold or a claim would hold it):
/// it only stores events, which name the rollup; the rollup's figures are its folded sums plus the
/// events not folded yet, the same before and after a fold, a day straddling a trial end included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_do_not_wait_on_a_held_rollup() {
    let app = crate::helpers::spawn_app(crate::helpers::Store::Postgres).await;
    app.add_tenant("acme").await;
    let last = BillingPeriod::containing(Utc::now(), UTC).prev();
    let (start, end) = last.bounds(UTC);
    let at = start + Duration::hours(5);
    assert_eq!(
        put(&app, &[event("first", "acme", UsageType::SttWords, 1, at)]).await,
        1
    );
    let thanotopolis_billing::db::Db::Postgres(pool) = &app.db else {
        unreachable!()
    };
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM usage_rollups_folded WHERE tenant_id = 'acme' FOR UPDATE")
        .fetch_all(&mut *holder)
        .await
        .unwrap();

    let later = at + Duration::hours(2);
    for (id, q) in [("second", 10), ("third", 100)] {
        let db = app.db.clone();
        let e = event(id, "acme", UsageType::SttWords, q, later);
        let accepted = tokio::time::timeout(std::time::Duration::from_secs(10), async move {
            ingest(&db, &[e], time::now(), UTC).await.unwrap().accepted
        })
        .await
        .expect("an ingest completes while the rollup is held");
        assert_eq!(accepted, 1);
    }
    holder.commit().await.unwrap();

    let open_rollups = || {
        scalar(
            &app.db,
            "SELECT COUNT(*) FROM usage_rollups WHERE tenant_id = 'acme' AND billed_by IS NULL",
        )
    };
    assert_eq!(
        open_rollups().await,
        1,
        "one open rollup per tenant and day"
    );
    let unbilled = billable::unbilled(&app.db, &acme(), end, UTC)
        .await
        .unwrap();
    assert_eq!(unbilled, BTreeMap::from([(last, totals(111, 0, 0))]));
    // Folded, the figures are the same; there is nothing to merge. (A fold stops at the oldest
    // transaction running on the server: another database's may hold it back for a moment.)
    for _ in 0..200 {
        fold::fold(&app.db).await.unwrap();
        if scalar(&app.db, "SELECT COUNT(*) FROM usage_tail").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        scalar(&app.db, "SELECT stt_words FROM usage_rollups_folded").await,
        111
    );
    assert_eq!(
        billable::unbilled(&app.db, &acme(), end, UTC)
            .await
            .unwrap(),
        unbilled
    );
    let today = Utc::now().date_naive();
    assert_eq!(compact::compact(&app.db, today).await.unwrap(), 0);
    // A trial ending between the first event and the others: the day reads its events one by one.
    insert_subscription(
        &app,
        "acme",
        "sub_1",
        "active",
        Some(at + Duration::hours(1)),
    )
    .await;
    let after_trial = BTreeMap::from([(last, totals(110, 0, 0))]);
    assert_eq!(
        billable::unbilled(&app.db, &acme(), end, UTC)
            .await
            .unwrap(),
        after_trial
    );
    let claimed = billable::claim_unbilled(&app.db, &acme(), end, UTC, "run:held")
        .await
        .unwrap();
    assert_eq!(claimed, after_trial);
    assert_eq!(open_rollups().await, 0);
}
