//! The super admin's revenue figures' queries (definitions in `docs/OVERVIEW.md`).

use super::Db;
use crate::domain::BillingPeriod;
use crate::with_pool;
use chrono::{DateTime, NaiveDate, Utc};

/// Usage recorded in `period`, by tenant (billed or not, free or not: what happened).
pub async fn usage_by_tenant(
    db: &Db,
    period: BillingPeriod,
) -> Result<Vec<(String, i64, i64, i64)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT tenant_id, CAST(SUM(stt_words) AS BIGINT), CAST(SUM(tts_words) AS BIGINT),
                    CAST(SUM(phone_calls) AS BIGINT)
             FROM usage_rollups WHERE day >= $1 AND day < $2 GROUP BY tenant_id",
        )
        .bind(period.first_day())
        .bind(period.end_day())
        .fetch_all(pool)
        .await
    })
}

/// Paid invoices since `since`: when, how much, and whether it is a usage invoice (has `billing_period`).
pub async fn paid_invoices_since(
    db: &Db,
    since: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, i64, bool)>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, i64, Option<String>)> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT paid_at, amount_paid_cents, billing_period FROM invoices
             WHERE status = 'paid' AND paid_at IS NOT NULL AND paid_at >= $1",
        )
        .bind(since)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(at, amount, period)| (at, amount, period.is_some()))
        .collect())
}

/// Usage of every tenant by local day, from `since` on: voice words and calls.
pub async fn usage_by_day_since(
    db: &Db,
    since: NaiveDate,
) -> Result<Vec<(NaiveDate, i64, i64)>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT day, CAST(SUM(stt_words + tts_words) AS BIGINT), CAST(SUM(phone_calls) AS BIGINT)
             FROM usage_rollups WHERE day >= $1 GROUP BY day",
        )
        .bind(since)
        .fetch_all(pool)
        .await
    })
}
