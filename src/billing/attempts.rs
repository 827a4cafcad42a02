//! The payment attempts the service makes itself (`collection_attempts`): one row per attempt, keyed by
//! its idempotency key, and the usage invoices due for a retry.

use crate::db::Db;
use crate::domain::time::now;
use crate::with_pool;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Why the service attempted a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The tenant's payment method changed: its open invoices are paid at once.
    PaymentMethodChanged,
    /// A usage invoice's retry on `USAGE_RETRY_DAYS`.
    Retry,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PaymentMethodChanged => "payment_method_changed",
            Reason::Retry => "retry",
        }
    }
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub idempotency_key: String,
    pub tenant_id: String,
    pub stripe_invoice_id: String,
    pub billing_period: Option<String>,
    /// `payment_method_changed` or `retry`.
    pub reason: String,
    /// The retry's number (1 for the first of `USAGE_RETRY_DAYS`); 0 for a payment after a change.
    pub attempt_no: i32,
    /// Stripe's clock when it was made.
    pub stripe_time: DateTime<Utc>,
    /// `paid`, `processing`, `declined`, `action_required`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// Records an attempt (a repeat under the same key updates its outcome: it is the same attempt).
pub async fn record(db: &Db, a: &Attempt) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO collection_attempts (idempotency_key, tenant_id, stripe_invoice_id, billing_period,
                reason, attempt_no, stripe_time, outcome, detail, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (idempotency_key) DO UPDATE SET outcome = excluded.outcome,
                detail = excluded.detail, stripe_time = excluded.stripe_time",
        )
        .bind(&a.idempotency_key)
        .bind(&a.tenant_id)
        .bind(&a.stripe_invoice_id)
        .bind(&a.billing_period)
        .bind(&a.reason)
        .bind(a.attempt_no)
        .bind(a.stripe_time.timestamp())
        .bind(&a.outcome)
        .bind(&a.detail)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
    })
}

macro_rules! from_row {
    ($row:expr) => {{
        let r = $row;
        Attempt {
            idempotency_key: r.get("idempotency_key"),
            tenant_id: r.get("tenant_id"),
            stripe_invoice_id: r.get("stripe_invoice_id"),
            billing_period: r.get("billing_period"),
            reason: r.get("reason"),
            attempt_no: r.get("attempt_no"),
            stripe_time: DateTime::from_timestamp(r.get::<i64, _>("stripe_time"), 0)
                .unwrap_or_default(),
            outcome: r.get("outcome"),
            detail: r.get("detail"),
        }
    }};
}

const COLUMNS: &str =
    "idempotency_key, tenant_id, stripe_invoice_id, billing_period, reason, attempt_no, \
    stripe_time, outcome, detail";

/// The attempts on these invoices, oldest first.
pub async fn for_invoices(db: &Db, invoices: &[String]) -> Result<Vec<Attempt>, sqlx::Error> {
    let mut out = Vec::new();
    for inv in invoices {
        let rows = with_pool!(db, pool => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM collection_attempts WHERE stripe_invoice_id = $1
                 ORDER BY stripe_time, attempt_no"
            ))
            .bind(inv)
            .fetch_all(pool)
            .await
            .map(|rows| rows.iter().map(|r| from_row!(r)).collect::<Vec<_>>())
        })?;
        out.extend(rows);
    }
    Ok(out)
}

/// The latest attempts of every tenant, newest first.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<Attempt>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM collection_attempts ORDER BY stripe_time DESC, idempotency_key LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(pool)
        .await
        .map(|rows| rows.iter().map(|r| from_row!(r)).collect())
    })
}

/// A usage invoice whose payment failed and that is still open: a candidate for our retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryCandidate {
    pub tenant_id: String,
    pub stripe_invoice_id: String,
    /// Its first failed payment, by Stripe's clock (the failure event's `created`).
    pub first_failed_at: DateTime<Utc>,
    /// Retries made so far.
    pub retries: i64,
}

/// Open usage invoices (of tenants not in demo) with a failed payment, the first failure first.
pub async fn retry_candidates(db: &Db) -> Result<Vec<RetryCandidate>, sqlx::Error> {
    let rows: Vec<(String, String, DateTime<Utc>, i64)> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT i.tenant_id, i.stripe_invoice_id,
                    (SELECT MIN(w.stripe_created_at) FROM webhook_events w
                     WHERE w.object_id = i.stripe_invoice_id
                       AND w.event_type IN ('invoice.payment_failed', 'invoice.payment_action_required')),
                    (SELECT COUNT(*) FROM collection_attempts a
                     WHERE a.stripe_invoice_id = i.stripe_invoice_id AND a.reason = 'retry')
             FROM invoices i JOIN tenants t ON t.id = i.tenant_id
             WHERE i.status = 'open' AND i.billing_period IS NOT NULL AND NOT t.is_demo
               AND EXISTS (SELECT 1 FROM webhook_events w WHERE w.object_id = i.stripe_invoice_id
                   AND w.event_type IN ('invoice.payment_failed', 'invoice.payment_action_required'))
             ORDER BY i.stripe_invoice_id",
        )
        .fetch_all(pool)
        .await
    })?;
    let mut out: Vec<RetryCandidate> = rows
        .into_iter()
        .map(
            |(tenant_id, stripe_invoice_id, first_failed_at, retries)| RetryCandidate {
                tenant_id,
                stripe_invoice_id,
                first_failed_at,
                retries,
            },
        )
        .collect();
    out.sort_by_key(|c| c.first_failed_at);
    Ok(out)
}
