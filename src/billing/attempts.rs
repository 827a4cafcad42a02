//! The payment attempts the service makes itself (`collection_attempts`): one row per attempt, keyed by
//! its idempotency key, and the usage invoices due for a retry. A row also records that the retries of
//! a usage invoice stopped for the tenant's payment method (reason `retries_stopped`, keyed by
//! [`stop_key`]): only a new payment method, or the customer, can pay it now.

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
    /// Not an attempt: the usage invoice's retries stopped with the tenant's payment method (a hard
    /// decline, a bank return, Stripe refusing the payment).
    RetriesStopped,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PaymentMethodChanged => "payment_method_changed",
            Reason::Retry => "retry",
            Reason::RetriesStopped => "retries_stopped",
        }
    }
}

/// An attempt Stripe refused for good (a 4xx other than a decline: no payment method, a mandate no
/// longer valid, ...): it counts as made, and stops the retries with that payment method.
pub const REFUSED: &str = "refused";
/// An attempt that failed on the way (Stripe unreachable, a 5xx): not counted; made again, under the
/// same key, at the next wake-up.
pub const ERROR: &str = "error";
/// The outcome of a [`Reason::RetriesStopped`] row.
pub const STOPPED: &str = "stopped";

/// The key of the row that stops a usage invoice's retries with `payment_method` (the tenant's, or
/// none); a new payment method is not stopped by it.
pub fn stop_key(invoice: &str, payment_method: Option<&str>) -> String {
    format!(
        "usage-retry:{invoice}:stop:{}",
        payment_method.unwrap_or(NO_PAYMENT_METHOD)
    )
}

const NO_PAYMENT_METHOD: &str = "none";

/// [`stop_key`] in SQL, for invoice `i` and the tenant's payment method `p`.
const STOP_KEY_SQL: &str =
    "'usage-retry:' || i.stripe_invoice_id || ':stop:' || COALESCE(p.stripe_payment_method_id, 'none')";

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub idempotency_key: String,
    pub tenant_id: String,
    pub stripe_invoice_id: String,
    pub billing_period: Option<String>,
    /// `payment_method_changed`, `retry` or `retries_stopped`.
    pub reason: String,
    /// The retry's number (1 for the first of `USAGE_RETRY_DAYS`); 0 for a payment after a change;
    /// the retries made, for `retries_stopped`.
    pub attempt_no: i32,
    /// Stripe's clock when it was made.
    pub stripe_time: DateTime<Utc>,
    /// `paid`, `processing`, `declined`, `action_required`, `void`, `uncollectible` (settled before
    /// the attempt), [`REFUSED`], [`ERROR`]; [`STOPPED`] for `retries_stopped`.
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

/// The attempts on these invoices, oldest first (one query, whatever their number).
pub async fn for_invoices(db: &Db, invoices: &[String]) -> Result<Vec<Attempt>, sqlx::Error> {
    let order = "ORDER BY stripe_time, attempt_no, idempotency_key";
    match db {
        Db::Postgres(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS} FROM collection_attempts WHERE stripe_invoice_id = ANY($1) {order}"
        ))
        .bind(invoices)
        .fetch_all(pool)
        .await
        .map(|rows| rows.iter().map(|r| from_row!(r)).collect()),
        Db::Sqlite(pool) => sqlx::query(&format!(
            "SELECT {COLUMNS} FROM collection_attempts
             WHERE stripe_invoice_id IN (SELECT value FROM json_each($1)) {order}"
        ))
        .bind(serde_json::to_string(invoices).expect("strings serialize"))
        .fetch_all(pool)
        .await
        .map(|rows| rows.iter().map(|r| from_row!(r)).collect()),
    }
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
    /// Retries made so far (those that failed on the way, [`ERROR`], are made again, not counted).
    pub retries: i64,
    /// The latest attempt the service made on it (a retry, or a payment after a change), by Stripe's
    /// clock.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The tenant's payment method, which a retry charges (Stripe's id), if it has one.
    pub payment_method: Option<String>,
    /// Its retries stopped with that payment method.
    pub stopped: bool,
}

type CandidateRow = (
    String,
    String,
    DateTime<Utc>,
    i64,
    Option<i64>,
    Option<String>,
    bool,
);

/// Open usage invoices (of tenants not in demo) with a failed payment, the first failure first.
pub async fn retry_candidates(db: &Db) -> Result<Vec<RetryCandidate>, sqlx::Error> {
    let sql = format!(
        "SELECT i.tenant_id, i.stripe_invoice_id,
                (SELECT MIN(w.stripe_created_at) FROM webhook_events w
                 WHERE w.object_id = i.stripe_invoice_id
                   AND w.event_type IN ('invoice.payment_failed', 'invoice.payment_action_required')),
                (SELECT COUNT(*) FROM collection_attempts a
                 WHERE a.stripe_invoice_id = i.stripe_invoice_id AND a.reason = 'retry'
                   AND a.outcome <> '{ERROR}'),
                (SELECT MAX(a.stripe_time) FROM collection_attempts a
                 WHERE a.stripe_invoice_id = i.stripe_invoice_id
                   AND a.reason IN ('retry', 'payment_method_changed') AND a.outcome <> '{ERROR}'),
                p.stripe_payment_method_id,
                EXISTS (SELECT 1 FROM collection_attempts s WHERE s.idempotency_key = {STOP_KEY_SQL})
         FROM invoices i JOIN tenants t ON t.id = i.tenant_id
              LEFT JOIN payment_methods p ON p.tenant_id = i.tenant_id
         WHERE i.status = 'open' AND i.billing_period IS NOT NULL AND NOT t.is_demo
           AND EXISTS (SELECT 1 FROM webhook_events w WHERE w.object_id = i.stripe_invoice_id
               AND w.event_type IN ('invoice.payment_failed', 'invoice.payment_action_required'))
         ORDER BY i.stripe_invoice_id"
    );
    let rows: Vec<CandidateRow> = with_pool!(db, pool => {
        sqlx::query_as(&sql).fetch_all(pool).await
    })?;
    let mut out: Vec<RetryCandidate> = rows
        .into_iter()
        .map(
            |(tenant_id, stripe_invoice_id, first_failed_at, retries, last, pm, stopped)| {
                RetryCandidate {
                    tenant_id,
                    stripe_invoice_id,
                    first_failed_at,
                    retries,
                    last_attempt_at: last.and_then(|t| DateTime::from_timestamp(t, 0)),
                    payment_method: pm,
                    stopped,
                }
            },
        )
        .collect();
    out.sort_by_key(|c| c.first_failed_at);
    Ok(out)
}

/// An open usage invoice whose retries stopped with the tenant's present payment method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub tenant_id: String,
    pub stripe_invoice_id: String,
    /// Why (the sentence recorded with the stop).
    pub why: String,
}

/// Every open invoice whose retries stopped with the tenant's present payment method, oldest first.
pub async fn stopped(db: &Db) -> Result<Vec<Stopped>, sqlx::Error> {
    let sql = format!(
        "SELECT i.tenant_id, i.stripe_invoice_id, s.detail
         FROM invoices i
              LEFT JOIN payment_methods p ON p.tenant_id = i.tenant_id
              JOIN collection_attempts s ON s.idempotency_key = {STOP_KEY_SQL}
         WHERE i.status = 'open'
         ORDER BY i.stripe_created_at, i.stripe_invoice_id"
    );
    let rows: Vec<(String, String, Option<String>)> = with_pool!(db, pool => {
        sqlx::query_as(&sql).fetch_all(pool).await
    })?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, stripe_invoice_id, why)| Stopped {
            tenant_id,
            stripe_invoice_id,
            why: why.unwrap_or_default(),
        })
        .collect())
}
