//! Every Stripe event we received, by id: an event is applied until it succeeds once, then never again.

use super::Db;
use crate::domain::time::now;
use crate::with_pool;
use chrono::{DateTime, Utc};

/// Whether this event still needs applying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First time, or earlier attempts failed: apply it.
    Apply,
    /// Applied before: acknowledge and do nothing.
    AlreadyApplied,
}

/// Records the event (once; a redelivery keeps the first receipt) and says whether to apply it.
pub async fn receive(
    db: &Db,
    event_id: &str,
    event_type: &str,
    object_id: Option<&str>,
    stripe_created_at: DateTime<Utc>,
) -> Result<Receipt, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO webhook_events (event_id, event_type, object_id, stripe_created_at, received_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(object_id)
        .bind(stripe_created_at)
        .bind(now())
        .execute(pool)
        .await?;
        let processed: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT processed_at FROM webhook_events WHERE event_id = $1")
                .bind(event_id)
                .fetch_one(pool)
                .await?;
        Ok(if processed.is_some() { Receipt::AlreadyApplied } else { Receipt::Apply })
    })
}

/// Marks the event applied, with the tenant it concerned (if any).
pub async fn mark_applied(
    db: &Db,
    event_id: &str,
    tenant_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE webhook_events SET processed_at = $2, tenant_id = COALESCE($3, tenant_id) WHERE event_id = $1")
            .bind(event_id)
            .bind(now())
            .bind(tenant_id)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// How many events of `event_type` we received since `since` (e.g. failed payments in 30 days).
pub async fn count_since(
    db: &Db,
    event_type: &str,
    since: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events WHERE event_type = $1 AND received_at >= $2")
            .bind(event_type)
            .bind(since)
            .fetch_one(pool)
            .await
    })
}
