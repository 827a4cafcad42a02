//! Merging the rollup shards of days that are over, so that reading a past day costs one row per key.
//!
//! Before migration 0006, concurrent PostgreSQL ingests wrote up to four copies (shards) of a (tenant,
//! day) rollup; ingests now write shard 0 only, so only rollups from then, or a day with a copy in
//! shard 0 and an older one elsewhere, have more than one open row. `serve` merges each key's open
//! copies of days that are over into the one of the lowest shard: its quantities and count grow by
//! theirs, the others are deleted, and `usage_rollup_merges` records where their events now count (the
//! events themselves are not rewritten; events not folded yet count there too). Totals never change.
//!
//! Each key is merged in its own transaction. On PostgreSQL it first holds the tenant's rollups as a
//! claim does ([`super::billable::HOLD_ROLLUPS`]: no ingest in flight is adding events to a rollup
//! about to be deleted, no fold is moving sums meanwhile), then locks the key's open rollups in shard
//! order; a claimed one is no longer open and is left alone. Safe to run on several replicas.

use crate::db::Db;
use crate::domain::time;
use chrono::NaiveDate;
use chrono_tz::Tz;
use std::time::Duration;

/// How often `serve` merges.
pub const INTERVAL: Duration = Duration::from_secs(300);
/// Keys merged per pass over the candidates.
const KEYS_PER_PASS: i64 = 5_000;

/// Merges the open shards of every key of a local day before `before_day`; returns how many rollups
/// were merged away.
pub async fn compact(db: &Db, before_day: NaiveDate) -> Result<u64, sqlx::Error> {
    let mut merged = 0;
    loop {
        let keys: Vec<(String, NaiveDate)> = crate::with_pool!(db, pool => {
            sqlx::query_as(
                "SELECT tenant_id, day FROM usage_rollups_folded
                 WHERE billed_by IS NULL AND day < $1
                 GROUP BY tenant_id, day HAVING COUNT(*) > 1
                 ORDER BY tenant_id, day LIMIT $2",
            )
            .bind(before_day)
            .bind(KEYS_PER_PASS)
            .fetch_all(pool)
            .await
        })?;
        let mut progress = 0;
        for (tenant, day) in &keys {
            progress += merge_key(db, tenant, *day).await?;
        }
        merged += progress;
        // A key found but left with one open rollup (a claim took the rest) gives no progress; the
        // next pass would find the same keys, so stop there.
        if (keys.len() as i64) < KEYS_PER_PASS || progress == 0 {
            return Ok(merged);
        }
    }
}

/// One open rollup's quantities, as a merge moves them.
type Row = (i64, i64, i64, i64, i64);

/// Merges one key's open rollups into its lowest shard; returns how many were merged away.
async fn merge_key(db: &Db, tenant: &str, day: NaiveDate) -> Result<u64, sqlx::Error> {
    // SQLite's write transaction excludes every other writer already.
    let (hold, lock): (&[&str], _) = match db {
        Db::Postgres(_) => (&super::billable::HOLD_ROLLUPS, " FOR UPDATE"),
        Db::Sqlite(_) => (&[], ""),
    };
    let select = format!(
        "SELECT id, stt_words, tts_words, phone_calls, event_count FROM usage_rollups_folded
         WHERE tenant_id = $1 AND day = $2 AND billed_by IS NULL
         ORDER BY shard{lock}"
    );
    crate::begin_write!(db, pool, tx => {
        for sql in hold {
            sqlx::query(sql)
                .bind(super::ingest::bucket(tenant))
                .execute(&mut *tx)
                .await?;
        }
        let rows: Vec<Row> = sqlx::query_as(&select)
            .bind(tenant)
            .bind(day)
            .fetch_all(&mut *tx)
            .await?;
        let Some(((keeper, ..), rest)) = rows.split_first() else {
            return Ok(0);
        };
        if rest.is_empty() {
            return Ok(0);
        }
        let sum = |f: fn(&Row) -> i64| rest.iter().map(f).sum::<i64>();
        sqlx::query(
            "UPDATE usage_rollups_folded SET stt_words = stt_words + $2, tts_words = tts_words + $3,
                 phone_calls = phone_calls + $4, event_count = event_count + $5
             WHERE id = $1",
        )
        .bind(keeper)
        .bind(sum(|r| r.1))
        .bind(sum(|r| r.2))
        .bind(sum(|r| r.3))
        .bind(sum(|r| r.4))
        .execute(&mut *tx)
        .await?;
        for (merged, ..) in rest {
            // Rollups merged into this one earlier now count in the keeper too.
            sqlx::query("UPDATE usage_rollup_merges SET into_id = $2 WHERE into_id = $1")
                .bind(merged)
                .bind(keeper)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO usage_rollup_merges (merged_id, into_id) VALUES ($1, $2)")
                .bind(merged)
                .bind(keeper)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM usage_rollups_folded WHERE id = $1")
                .bind(merged)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rest.len() as u64)
    })
}

/// The local day of now in `tz`: days before it are over.
fn today(tz: Tz) -> NaiveDate {
    time::now().with_timezone(&tz).date_naive()
}

/// Runs until shutdown is asked (between merges: each merge is one transaction).
pub async fn run(db: Db, tz: Tz, mut shutdown: crate::shutdown::Shutdown) {
    loop {
        match compact(&db, today(tz)).await {
            Ok(0) => {}
            Ok(merged) => tracing::info!(merged, "rollup shards of past days merged"),
            Err(e) => tracing::warn!(error = %e, "rollup shards could not be merged"),
        }
        if shutdown.sleep(INTERVAL).await {
            return;
        }
    }
}
