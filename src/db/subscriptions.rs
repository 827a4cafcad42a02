//! Our copy of each tenant's Stripe subscriptions, kept true by webhooks and by our own writes.

use super::Db;
use crate::domain::time::now;
use crate::domain::SubscriptionStatus;
use crate::domain::TenantId;
use crate::with_pool;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubscriptionRow {
    pub stripe_subscription_id: String,
    pub tenant_id: String,
    pub stripe_customer_id: String,
    pub status: String,
    pub price_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub trial_start: Option<DateTime<Utc>>,
    pub trial_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub stripe_created_at: DateTime<Utc>,
    /// When we read this state from Stripe: a write with an older reading never replaces a newer one.
    pub stripe_updated_at: DateTime<Utc>,
}

impl SubscriptionRow {
    /// The status as a state (the row keeps Stripe's word).
    pub fn state(&self) -> SubscriptionStatus {
        SubscriptionStatus::parse(&self.status)
    }

    pub fn is_live(&self) -> bool {
        self.ended_at.is_none() && self.state().is_live()
    }
}

const COLUMNS: &str = "stripe_subscription_id, tenant_id, stripe_customer_id, status, price_id, amount_cents, \
    currency, current_period_start, current_period_end, trial_start, trial_end, cancel_at_period_end, canceled_at, \
    ended_at, stripe_created_at, stripe_updated_at";

macro_rules! from_row {
    ($row:expr) => {{
        let r = $row;
        SubscriptionRow {
            stripe_subscription_id: r.get("stripe_subscription_id"),
            tenant_id: r.get("tenant_id"),
            stripe_customer_id: r.get("stripe_customer_id"),
            status: r.get("status"),
            price_id: r.get("price_id"),
            amount_cents: r.get("amount_cents"),
            currency: r.get("currency"),
            current_period_start: r.get("current_period_start"),
            current_period_end: r.get("current_period_end"),
            trial_start: r.get("trial_start"),
            trial_end: r.get("trial_end"),
            cancel_at_period_end: r.get("cancel_at_period_end"),
            canceled_at: r.get("canceled_at"),
            ended_at: r.get("ended_at"),
            stripe_created_at: r.get("stripe_created_at"),
            stripe_updated_at: r.get("stripe_updated_at"),
        }
    }};
}

/// Inserts or updates the row, unless the stored reading is newer. Returns whether it was written.
pub async fn upsert(db: &Db, s: &SubscriptionRow) -> Result<bool, sqlx::Error> {
    upsert_versioned(db, s, None).await
}

/// As [`upsert`], ordered by Stripe's clock first: `stripe_clock` is the second of Stripe's answer that
/// carried the reading (`None`: unknown, taken as the stored one's), then by our read time within it.
pub async fn upsert_versioned(
    db: &Db,
    s: &SubscriptionRow,
    stripe_clock: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO subscriptions ({COLUMNS}, synced_at, stripe_clock)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 COALESCE($18, (SELECT e.stripe_clock FROM subscriptions e WHERE e.stripe_subscription_id = $1), 0))
         ON CONFLICT (stripe_subscription_id) DO UPDATE SET
            tenant_id = excluded.tenant_id, stripe_customer_id = excluded.stripe_customer_id,
            status = excluded.status, price_id = excluded.price_id, amount_cents = excluded.amount_cents,
            currency = excluded.currency, current_period_start = excluded.current_period_start,
            current_period_end = excluded.current_period_end, trial_start = excluded.trial_start,
            trial_end = excluded.trial_end, cancel_at_period_end = excluded.cancel_at_period_end,
            canceled_at = excluded.canceled_at, ended_at = excluded.ended_at,
            stripe_updated_at = excluded.stripe_updated_at, synced_at = excluded.synced_at,
            stripe_clock = excluded.stripe_clock
         WHERE subscriptions.stripe_clock < excluded.stripe_clock
            OR (subscriptions.stripe_clock = excluded.stripe_clock
                AND subscriptions.stripe_updated_at <= excluded.stripe_updated_at)"
    );
    with_pool!(db, pool => {
        sqlx::query(&sql)
            .bind(&s.stripe_subscription_id)
            .bind(&s.tenant_id)
            .bind(&s.stripe_customer_id)
            .bind(&s.status)
            .bind(&s.price_id)
            .bind(s.amount_cents)
            .bind(&s.currency)
            .bind(s.current_period_start)
            .bind(s.current_period_end)
            .bind(s.trial_start)
            .bind(s.trial_end)
            .bind(s.cancel_at_period_end)
            .bind(s.canceled_at)
            .bind(s.ended_at)
            .bind(s.stripe_created_at)
            .bind(s.stripe_updated_at)
            .bind(now())
            .bind(stripe_clock)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() > 0)
    })
}

/// The tenant's subscriptions, newest first.
pub async fn for_tenant(db: &Db, tenant_id: &str) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE tenant_id = $1 ORDER BY stripe_created_at DESC"
        ))
        .bind(tenant_id)
        .fetch_all(pool)
        .await
        .map(|rows| rows.iter().map(|r| from_row!(r)).collect())
    })
}

/// The subscription that stands for the tenant now: the newest live one, if any.
pub async fn live_for_tenant(
    db: &Db,
    tenant_id: &str,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    Ok(for_tenant(db, tenant_id)
        .await?
        .into_iter()
        .find(SubscriptionRow::is_live))
}

pub async fn get(db: &Db, id: &str) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!("SELECT {COLUMNS} FROM subscriptions WHERE stripe_subscription_id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
            .map(|r| r.map(|r| from_row!(&r)))
    })
}

/// Every subscription (for the revenue overview).
pub async fn all(db: &Db) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!("SELECT {COLUMNS} FROM subscriptions ORDER BY tenant_id, stripe_created_at DESC"))
            .fetch_all(pool)
            .await
            .map(|rows| rows.iter().map(|r| from_row!(r)).collect())
    })
}

/// A tenant's live subscription, as the dashboard shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CurrentSubscription {
    /// Stripe's subscription id.
    pub subscription_id: String,
    pub status: String,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub current_period_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub amount_cents: i64,
    /// The same id again under the names the platform's pages read (`id`, `stripe_subscription_id`):
    /// we keep no id of our own.
    pub id: String,
    pub stripe_subscription_id: String,
    /// The Stripe price it bills (null when Stripe did not say).
    pub stripe_price_id: Option<String>,
    #[schema(example = "usd")]
    pub currency: String,
    /// When Stripe created the subscription.
    #[serde(with = "crate::domain::time::serde_rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<SubscriptionRow> for CurrentSubscription {
    fn from(s: SubscriptionRow) -> CurrentSubscription {
        CurrentSubscription {
            id: s.stripe_subscription_id.clone(),
            stripe_subscription_id: s.stripe_subscription_id.clone(),
            subscription_id: s.stripe_subscription_id,
            stripe_price_id: s.price_id,
            status: s.status,
            current_period_start: s.current_period_start,
            current_period_end: s.current_period_end,
            cancel_at_period_end: s.cancel_at_period_end,
            amount_cents: s.amount_cents,
            currency: s.currency,
            created_at: s.stripe_created_at,
        }
    }
}

/// The tenant's most recent subscription that has not ended, if any.
pub async fn current(
    db: &Db,
    tenant: &TenantId,
) -> Result<Option<CurrentSubscription>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM subscriptions
             WHERE tenant_id = $1 AND ended_at IS NULL
               AND status NOT IN ('canceled', 'incomplete_expired')
             ORDER BY stripe_created_at DESC
             LIMIT 1"
        ))
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await
        .map(|r| r.map(|r| CurrentSubscription::from(from_row!(&r))))
    })
}

/// What a tenant's access follows from (see `subscriptions::access`).
pub struct AccessState {
    pub is_demo: bool,
    /// The newest live subscription, else the newest of any state.
    pub subscription: Option<SubscriptionRow>,
    /// The first failed payment of an invoice still open (only looked up while past due).
    pub first_failure: Option<DateTime<Utc>>,
    /// Whether the bank asks the customer to confirm a payment of an open invoice (only looked up
    /// while past due).
    pub action_required: bool,
}

/// The tenant's access state, or `None` for an unknown tenant.
pub async fn access_state(db: &Db, tenant: &TenantId) -> Result<Option<AccessState>, sqlx::Error> {
    let is_demo: Option<bool> = with_pool!(db, pool => {
        sqlx::query_scalar("SELECT is_demo FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await
    })?;
    let Some(is_demo) = is_demo else {
        return Ok(None);
    };
    let all = for_tenant(db, tenant.as_str()).await?;
    let subscription = all.iter().find(|s| s.is_live()).or(all.first()).cloned();
    let failed = match &subscription {
        Some(s) if s.state() == SubscriptionStatus::PastDue => {
            super::invoices::failed_payments(db, tenant).await?
        }
        _ => Vec::new(),
    };
    Ok(Some(AccessState {
        is_demo,
        subscription,
        first_failure: failed.iter().map(|f| f.first_failed_at).min(),
        action_required: failed.iter().any(|f| f.action_required),
    }))
}

/// The tenant's trials, each from its start to its end, for [`super::spans`] to read on the caller's
/// connection (the monthly run's claim reads them in its transaction). A trial's start is Stripe's
/// `trial_start`; a row without one (an old copy) starts its trial when the subscription was created.
pub const TRIAL_SPANS: &str =
    "SELECT COALESCE(trial_start, stripe_created_at), trial_end FROM subscriptions
     WHERE tenant_id = $1 AND trial_end IS NOT NULL";
