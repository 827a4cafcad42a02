//! Reads of our mirror of Stripe subscriptions.

use super::Db;
use crate::domain::TenantId;
use crate::with_pool;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A tenant's live subscription, as the dashboard shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CurrentSubscription {
    pub subscription_id: String,
    pub status: String,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub current_period_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub amount_cents: i64,
}

type Row = (
    String,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    bool,
    i64,
);

/// The tenant's most recent subscription that has not ended, if any.
pub async fn current(
    db: &Db,
    tenant: &TenantId,
) -> Result<Option<CurrentSubscription>, sqlx::Error> {
    let row: Option<Row> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT stripe_subscription_id, status, current_period_start, current_period_end,
                    cancel_at_period_end, amount_cents
             FROM subscriptions
             WHERE tenant_id = $1 AND ended_at IS NULL
               AND status NOT IN ('canceled', 'incomplete_expired')
             ORDER BY stripe_created_at DESC
             LIMIT 1",
        )
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await
    })?;
    Ok(row.map(
        |(subscription_id, status, start, end, cancel_at_period_end, amount_cents)| {
            CurrentSubscription {
                subscription_id,
                status,
                current_period_start: start,
                current_period_end: end,
                cancel_at_period_end,
                amount_cents,
            }
        },
    ))
}
