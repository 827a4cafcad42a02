//! Migrations that move data: a database as an earlier release left it, migrated, reads the same. And a
//! database the runner before sqlx's migrator left is carried over, not migrated again.

use crate::helpers::{fresh_database, scalar, Store};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha384};
use std::collections::BTreeMap;
use std::path::PathBuf;
use thanotopolis_billing::db::{self, tenants, Backend, Db};
use thanotopolis_billing::domain::{BillingPeriod, TenantId};
use thanotopolis_billing::usage::billable;
use thanotopolis_billing::usage::rating::UsageTotals;
use thanotopolis_billing::usage::{compact, ingest, NewEvent, UsageType};
use thanotopolis_billing::with_pool;

const UTC: Tz = chrono_tz::UTC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_by_type_fold_into_rollups_by_day_sqlite() {
    rollups_by_type_fold_into_rollups_by_day(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_by_type_fold_into_rollups_by_day_postgres() {
    rollups_by_type_fold_into_rollups_by_day(Store::Postgres).await;
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).unwrap()
}

fn at(m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, 12, 0, 0).unwrap()
}

fn totals(stt_words: i64, tts_words: i64, calls: i64) -> UsageTotals {
    UsageTotals {
        stt_words,
        tts_words,
        calls,
    }
}

/// A rollup of the old shape (one per type), with its events; returns its id.
#[allow(clippy::too_many_arguments)]
async fn old_rollup(
    db: &Db,
    tenant: &str,
    d: NaiveDate,
    usage_type: &str,
    shard: i16,
    events: &[(&str, i64)],
    billed: Option<(&str, i64)>,
) -> i64 {
    let quantity: i64 = events.iter().map(|e| e.1).sum();
    let id: i64 = with_pool!(db, pool => {
        sqlx::query_scalar(
            "INSERT INTO usage_rollups
                 (tenant_id, day, usage_type, shard, quantity, event_count, billed_by, billed_quantity, billed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(tenant)
        .bind(d)
        .bind(usage_type)
        .bind(shard)
        .bind(quantity)
        .bind(events.len() as i64)
        .bind(billed.map(|b| b.0))
        .bind(billed.map(|b| b.1))
        .bind(billed.map(|_| at(11, 1)))
        .fetch_one(pool)
        .await
    })
    .unwrap();
    for (event_id, q) in events {
        old_event(db, event_id, tenant, usage_type, *q, d, id).await;
    }
    id
}

async fn old_event(
    db: &Db,
    event_id: &str,
    tenant: &str,
    usage_type: &str,
    quantity: i64,
    d: NaiveDate,
    rollup_id: i64,
) {
    let occurred = UTC
        .from_local_datetime(&d.and_hms_opt(12, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc);
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO usage_events
                 (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id, metadata)
             VALUES ($1, $2, $3, $4, $5, $5, $6, NULL)",
        )
        .bind(event_id)
        .bind(tenant)
        .bind(usage_type)
        .bind(quantity)
        .bind(occurred)
        .bind(rollup_id)
        .execute(pool)
        .await
        .map(|_| ())
    })
    .unwrap();
}

async fn execute(db: &Db, sql: &str) {
    with_pool!(db, pool => sqlx::raw_sql(sql).execute(pool).await.map(|_| ())).unwrap();
}

type Row = (String, NaiveDate, i64, Option<String>, i64, i64, i64, i64);

async fn rows(db: &Db) -> Vec<Row> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT tenant_id, day, CAST(shard AS BIGINT), billed_by, stt_words, tts_words, phone_calls,
                    event_count
             FROM usage_rollups ORDER BY tenant_id, day, shard",
        )
        .fetch_all(pool)
        .await
    })
    .unwrap()
}

/// The release before rollups by day kept one rollup per type, and compaction had merged shards (their
/// rows deleted, their events naming them): migrated, every total, claim and event reads the same.
async fn rollups_by_type_fold_into_rollups_by_day(store: Store) {
    let (url, _dir) = fresh_database(store).await;
    let db = Db::connect(&url).await.unwrap();
    db::migrate_through(&db, 2).await.unwrap();
    for t in ["acme", "beta"] {
        let id = TenantId::parse(t).unwrap();
        tenants::add(&db, &id, t, t).await.unwrap();
    }
    let key = "invoice:acme:2026-10";

    // October 3rd, claimed by October's run: the words billed, the voice replies found free.
    old_rollup(
        &db,
        "acme",
        day(10, 3),
        "stt_words",
        0,
        &[("a0-1", 30)],
        Some((key, 30)),
    )
    .await;
    old_rollup(
        &db,
        "acme",
        day(10, 3),
        "tts_words",
        0,
        &[("a0-2", 20)],
        Some((key, 0)),
    )
    .await;
    execute(
        &db,
        "INSERT INTO usage_claims (tenant_id, billed_by, claimed_at)
         VALUES ('acme', 'invoice:acme:2026-10', '2026-11-01T00:00:00Z')",
    )
    .await;
    // November 5th: three types in shard 0, and words in shard 1.
    let stt = [("a1-1", 60), ("a1-2", 40)];
    old_rollup(&db, "acme", day(11, 5), "stt_words", 0, &stt, None).await;
    old_rollup(
        &db,
        "acme",
        day(11, 5),
        "tts_words",
        0,
        &[("a1-3", 50)],
        None,
    )
    .await;
    let calls = [("a1-4", 1), ("a1-5", 1)];
    old_rollup(&db, "acme", day(11, 5), "phone_calls", 0, &calls, None).await;
    old_rollup(
        &db,
        "acme",
        day(11, 5),
        "stt_words",
        1,
        &[("a1-6", 10)],
        None,
    )
    .await;
    // November 6th: shards 2 and 3 were merged into shard 0 (3 into 2 first, then 2 into 0).
    let keeper = old_rollup(
        &db,
        "acme",
        day(11, 6),
        "stt_words",
        0,
        &[("a2-1", 5)],
        None,
    )
    .await;
    let two = old_rollup(
        &db,
        "acme",
        day(11, 6),
        "stt_words",
        2,
        &[("a2-2", 7)],
        None,
    )
    .await;
    let three = old_rollup(
        &db,
        "acme",
        day(11, 6),
        "stt_words",
        3,
        &[("a2-3", 3)],
        None,
    )
    .await;
    let merges = format!(
        "UPDATE usage_rollups SET quantity = 15, event_count = 3 WHERE id = {keeper};
         DELETE FROM usage_rollups WHERE id IN ({two}, {three});
         INSERT INTO usage_rollup_merges (merged_id, into_id) VALUES ({two}, {keeper}), ({three}, {keeper})"
    );
    execute(&db, &merges).await;
    old_rollup(
        &db,
        "beta",
        day(11, 5),
        "phone_calls",
        0,
        &[("b1-1", 1)],
        None,
    )
    .await;
    let highest_old_id = scalar(&db, "SELECT MAX(rollup_id) FROM usage_events").await;

    assert_eq!(db::migrate_through(&db, 4).await.unwrap(), 2);
    db::migrate(&db).await.unwrap();

    let key_owned = Some(key.to_owned());
    assert_eq!(
        rows(&db).await,
        vec![
            ("acme".into(), day(10, 3), 0, key_owned, 30, 20, 0, 2),
            ("acme".into(), day(11, 5), 0, None, 100, 50, 2, 5),
            ("acme".into(), day(11, 5), 1, None, 10, 0, 0, 1),
            ("acme".into(), day(11, 6), 0, None, 15, 0, 0, 3),
            ("beta".into(), day(11, 5), 0, None, 0, 0, 1, 1),
        ]
    );
    let billed: (i64, i64, i64) = with_pool!(&db, pool => {
        sqlx::query_as(
            "SELECT billed_stt_words, billed_tts_words, billed_phone_calls FROM usage_rollups
             WHERE billed_by IS NOT NULL",
        )
        .fetch_one(pool)
        .await
    })
    .unwrap();
    assert_eq!(billed, (30, 0, 0));
    assert!(
        scalar(&db, "SELECT MIN(id) FROM usage_rollups").await > highest_old_id,
        "a new rollup has the id of an old one, which events may still name"
    );
    crate::helpers::assert_rollups_hold_their_events(&db).await;

    // October's claim, repeated with its key, returns what it took before the migration.
    let acme = TenantId::parse("acme").unwrap();
    let october = BillingPeriod::new(2026, 10).unwrap();
    let november = BillingPeriod::new(2026, 11).unwrap();
    let replay = billable::claim_unbilled(&db, &acme, at(11, 1), UTC, key)
        .await
        .unwrap();
    assert_eq!(replay, BTreeMap::from([(october, totals(30, 0, 0))]));
    let open = billable::unbilled(&db, &acme, at(12, 1), UTC)
        .await
        .unwrap();
    assert_eq!(open, BTreeMap::from([(november, totals(125, 50, 2))]));

    // New usage of a migrated day adds to its open rollup; compaction merges its shards.
    let late = NewEvent {
        event_id: "a1-7".into(),
        tenant_id: acme.clone(),
        usage_type: UsageType::TtsWords,
        quantity: 4,
        occurred_at: at(11, 5),
        metadata: None,
    };
    assert_eq!(
        ingest(&db, &[late], at(12, 1), UTC).await.unwrap().accepted,
        1
    );
    assert_eq!(compact::compact(&db, day(12, 1)).await.unwrap(), 1);
    let after = rows(&db).await;
    assert_eq!(after.len(), 4);
    assert_eq!(
        after[1],
        ("acme".into(), day(11, 5), 0, None, 110, 54, 2, 7)
    );
    crate::helpers::assert_rollups_hold_their_events(&db).await;
    let recorded = billable::recorded(&db, &acme, november).await.unwrap();
    assert_eq!(recorded, totals(125, 54, 2));
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runner_database_is_carried_over_sqlite() {
    old_runner_database_is_carried_over(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runner_database_is_carried_over_postgres() {
    old_runner_database_is_carried_over(Store::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runner_database_part_way_migrates_once_sqlite() {
    old_runner_database_part_way_migrates_once(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runner_database_part_way_migrates_once_postgres() {
    old_runner_database_part_way_migrates_once(Store::Postgres).await;
}

/// The migration files of `db`'s engine up to `last`, in order: (version, file stem, SQL).
fn migration_files(db: &Db, last: i64) -> Vec<(i64, String, String)> {
    let engine = match db.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let version: i64 = stem.split('_').next().unwrap().parse().unwrap();
            (version, stem, std::fs::read_to_string(&path).unwrap())
        })
        .filter(|(version, _, _)| *version <= last)
        .collect()
}

/// What the runner before sqlx's migrator did: each migration up to `last` in a transaction of its own,
/// recorded in `schema_migrations(version, name, applied_at)`.
async fn old_runner_migrate_through(db: &Db, last: i64) {
    execute(
        db,
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .await;
    for (version, name, sql) in migration_files(db, last) {
        with_pool!(db, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::raw_sql(&sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(&name)
                .bind("2026-11-30T08:00:00.123Z")
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await)
        .unwrap();
    }
}

type Recorded = (i64, String, bool, Vec<u8>);

/// What `_sqlx_migrations` must hold once migrations up to `last` are applied: sqlx's description
/// (the file name's words) and checksum (SHA-384 of the file).
fn expected(db: &Db, last: i64) -> Vec<Recorded> {
    migration_files(db, last)
        .into_iter()
        .map(|(version, stem, sql)| {
            let description = stem.split_once('_').unwrap().1.replace('_', " ");
            (version, description, true, Sha384::digest(&sql).to_vec())
        })
        .collect()
}

async fn recorded(db: &Db) -> Vec<Recorded> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(pool)
        .await
    })
    .unwrap()
}

/// The last migration of the last release with the old runner: a database it left holds no later one.
const OLD_RUNNER_LAST: i64 = 5;

/// A database fully migrated by the old runner: every migration it ran is recorded for sqlx and none
/// runs again, the later ones run once, its data stays, and the next start finds nothing to do.
async fn old_runner_database_is_carried_over(store: Store) {
    let (url, _dir) = fresh_database(store).await;
    let db = Db::connect(&url).await.unwrap();
    old_runner_migrate_through(&db, OLD_RUNNER_LAST).await;
    let acme = TenantId::parse("acme").unwrap();
    tenants::add(&db, &acme, "acme", "acme").await.unwrap();
    assert_eq!(expected(&db, OLD_RUNNER_LAST).len(), 5);
    let all = expected(&db, i64::MAX);

    assert_eq!(db::migrate(&db).await.unwrap(), all.len() - 5);
    assert_eq!(recorded(&db).await, all);
    assert_eq!(db::migrate(&db).await.unwrap(), 0);
    assert_eq!(recorded(&db).await, all, "carried over once");
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM tenants").await, 1);
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM schema_migrations").await,
        5,
        "the old runner's table is left as it was"
    );
    db.close().await;
}

/// A database the old runner left at migration 2, opened by several replicas at once: the two are
/// carried over, the ones after them run once (0004's PL/pgSQL functions and 0005's added columns
/// included), and their data stays.
async fn old_runner_database_part_way_migrates_once(store: Store) {
    let (url, _dir) = fresh_database(store).await;
    let db = Db::connect(&url).await.unwrap();
    old_runner_migrate_through(&db, 2).await;
    let acme = TenantId::parse("acme").unwrap();
    tenants::add(&db, &acme, "acme", "acme").await.unwrap();

    let replicas: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let db = Db::connect(&url).await.unwrap();
                let applied = db::migrate(&db).await.unwrap();
                db.close().await;
                applied
            })
        })
        .collect();
    let mut applied = 0;
    for replica in replicas {
        applied += replica.await.unwrap();
    }
    assert_eq!(applied, expected(&db, i64::MAX).len() - 2);
    assert_eq!(recorded(&db).await, expected(&db, i64::MAX));
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM schema_migrations").await,
        2
    );
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM tenants").await, 1);
    // 0005 added this column.
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM billing_ledger WHERE key_generation = 0"
        )
        .await,
        0
    );

    // The usage path works on it, through 0004's functions on PostgreSQL.
    let event = NewEvent {
        event_id: "after-1".into(),
        tenant_id: acme.clone(),
        usage_type: UsageType::PhoneCalls,
        quantity: 1,
        occurred_at: at(11, 5),
        metadata: None,
    };
    let outcome = ingest(&db, &[event], at(11, 6), UTC).await.unwrap();
    assert_eq!(outcome.accepted, 1);
    db.close().await;
}
