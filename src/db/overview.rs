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

/// One `invoice.payment_failed` event, with the invoice and organization it concerns as we have them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailedPaymentRow {
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    pub stripe_invoice_id: Option<String>,
    pub tenant_id: Option<String>,
    pub tenant_name: Option<String>,
    pub invoice_number: Option<String>,
    pub invoice_status: Option<String>,
    pub amount_due_cents: Option<i64>,
    pub hosted_invoice_url: Option<String>,
}

/// The `invoice.payment_failed` events received since `since`, newest first: exactly the events
/// `failed_payments_30d` counts (outer joins, so an event whose invoice we lack still shows).
pub async fn failed_payments_since(
    db: &Db,
    since: DateTime<Utc>,
) -> Result<Vec<FailedPaymentRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT e.event_id, e.received_at, e.object_id AS stripe_invoice_id,
                    COALESCE(e.tenant_id, i.tenant_id) AS tenant_id, t.name AS tenant_name,
                    i.number AS invoice_number, i.status AS invoice_status, i.amount_due_cents,
                    i.hosted_invoice_url
             FROM webhook_events e
             LEFT JOIN invoices i ON i.stripe_invoice_id = e.object_id
             LEFT JOIN tenants t ON t.id = COALESCE(e.tenant_id, i.tenant_id)
             WHERE e.event_type = 'invoice.payment_failed' AND e.received_at >= $1
             ORDER BY e.received_at DESC, e.event_id DESC",
        )
        .bind(since)
        .fetch_all(pool)
        .await
    })
}

/// Open invoices with at least one failed payment (an `invoice.payment_failed` or
/// `invoice.payment_action_required` event received for them), whenever it failed, oldest invoice first.
pub async fn open_invoices_with_failed_payment(db: &Db) -> Result<Vec<UnpaidInvoice>, sqlx::Error> {
    type Row = (
        String,
        String,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT i.tenant_id, i.stripe_invoice_id, i.amount_due_cents,
                    (SELECT MAX(e.stripe_created_at) FROM webhook_events e
                     WHERE e.object_id = i.stripe_invoice_id AND e.event_type = 'invoice.payment_failed'),
                    (SELECT MAX(e.stripe_created_at) FROM webhook_events e
                     WHERE e.object_id = i.stripe_invoice_id
                       AND e.event_type = 'invoice.payment_action_required')
             FROM invoices i
             WHERE i.status = 'open' AND EXISTS (
                 SELECT 1 FROM webhook_events e
                 WHERE e.object_id = i.stripe_invoice_id
                   AND e.event_type IN ('invoice.payment_failed', 'invoice.payment_action_required'))
             ORDER BY i.stripe_created_at, i.stripe_invoice_id",
        )
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(
            |(tenant_id, stripe_invoice_id, amount_due_cents, failed, action)| UnpaidInvoice {
                tenant_id,
                stripe_invoice_id,
                amount_due_cents,
                // The latest failure asked for the customer's authentication.
                action_required: action.is_some_and(|a| failed.is_none_or(|f| a >= f)),
            },
        )
        .collect())
}

/// An open invoice whose payment failed (or waits for the customer's authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidInvoice {
    pub tenant_id: String,
    pub stripe_invoice_id: String,
    pub amount_due_cents: i64,
    pub action_required: bool,
}
