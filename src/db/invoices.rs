//! Our copy of the tenants' Stripe invoices (subscription renewals and monthly usage invoices).

use super::Db;
use crate::domain::time::now;
use crate::domain::TenantId;
use crate::with_pool;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = InvoiceLine)]
pub struct InvoiceLineRow {
    pub description: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceRow {
    pub stripe_invoice_id: String,
    pub tenant_id: String,
    pub stripe_customer_id: String,
    pub stripe_subscription_id: Option<String>,
    pub billing_period: Option<String>,
    pub status: String,
    pub number: Option<String>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub amount_due_cents: i64,
    pub amount_paid_cents: i64,
    pub currency: String,
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    /// When an invoice sent for payment is due; Stripe leaves it null on invoices it charges itself.
    pub due_date: Option<DateTime<Utc>>,
    pub lines: Vec<InvoiceLineRow>,
    pub stripe_created_at: DateTime<Utc>,
    /// When we read this state from Stripe: an older reading never replaces a newer one.
    pub stripe_updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "stripe_invoice_id, tenant_id, stripe_customer_id, stripe_subscription_id, billing_period, \
    status, number, period_start, period_end, amount_due_cents, amount_paid_cents, currency, hosted_invoice_url, \
    invoice_pdf, paid_at, lines_json, stripe_created_at, stripe_updated_at, due_date";

macro_rules! from_row {
    ($row:expr) => {{
        let r = $row;
        let lines: String = r.get("lines_json");
        InvoiceRow {
            stripe_invoice_id: r.get("stripe_invoice_id"),
            tenant_id: r.get("tenant_id"),
            stripe_customer_id: r.get("stripe_customer_id"),
            stripe_subscription_id: r.get("stripe_subscription_id"),
            billing_period: r.get("billing_period"),
            status: r.get("status"),
            number: r.get("number"),
            period_start: r.get("period_start"),
            period_end: r.get("period_end"),
            amount_due_cents: r.get("amount_due_cents"),
            amount_paid_cents: r.get("amount_paid_cents"),
            currency: r.get("currency"),
            hosted_invoice_url: r.get("hosted_invoice_url"),
            invoice_pdf: r.get("invoice_pdf"),
            paid_at: r.get("paid_at"),
            due_date: r.get("due_date"),
            lines: serde_json::from_str(&lines).unwrap_or_default(),
            stripe_created_at: r.get("stripe_created_at"),
            stripe_updated_at: r.get("stripe_updated_at"),
        }
    }};
}

/// Inserts or updates the row, unless the stored reading is newer. Returns whether it was written.
pub async fn upsert(db: &Db, i: &InvoiceRow) -> Result<bool, sqlx::Error> {
    upsert_versioned(db, i, None).await
}

/// As [`upsert`], ordered by Stripe's clock first (see `subscriptions::upsert_versioned`).
pub async fn upsert_versioned(
    db: &Db,
    i: &InvoiceRow,
    stripe_clock: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let lines = serde_json::to_string(&i.lines).expect("lines serialize");
    let sql = format!(
        "INSERT INTO invoices ({COLUMNS}, synced_at, stripe_clock)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                 COALESCE($21, (SELECT e.stripe_clock FROM invoices e WHERE e.stripe_invoice_id = $1), 0))
         ON CONFLICT (stripe_invoice_id) DO UPDATE SET
            tenant_id = excluded.tenant_id, stripe_customer_id = excluded.stripe_customer_id,
            stripe_subscription_id = excluded.stripe_subscription_id,
            billing_period = COALESCE(excluded.billing_period, invoices.billing_period),
            status = excluded.status, number = excluded.number, period_start = excluded.period_start,
            period_end = excluded.period_end, amount_due_cents = excluded.amount_due_cents,
            amount_paid_cents = excluded.amount_paid_cents, currency = excluded.currency,
            hosted_invoice_url = excluded.hosted_invoice_url, invoice_pdf = excluded.invoice_pdf,
            paid_at = COALESCE(excluded.paid_at, invoices.paid_at), lines_json = excluded.lines_json,
            due_date = excluded.due_date,
            stripe_updated_at = excluded.stripe_updated_at, synced_at = excluded.synced_at,
            stripe_clock = excluded.stripe_clock
         WHERE invoices.stripe_clock < excluded.stripe_clock
            OR (invoices.stripe_clock = excluded.stripe_clock
                AND invoices.stripe_updated_at <= excluded.stripe_updated_at)"
    );
    let written = with_pool!(db, pool => {
        sqlx::query(&sql)
            .bind(&i.stripe_invoice_id)
            .bind(&i.tenant_id)
            .bind(&i.stripe_customer_id)
            .bind(&i.stripe_subscription_id)
            .bind(&i.billing_period)
            .bind(&i.status)
            .bind(&i.number)
            .bind(i.period_start)
            .bind(i.period_end)
            .bind(i.amount_due_cents)
            .bind(i.amount_paid_cents)
            .bind(&i.currency)
            .bind(&i.hosted_invoice_url)
            .bind(&i.invoice_pdf)
            .bind(i.paid_at)
            .bind(&lines)
            .bind(i.stripe_created_at)
            .bind(i.stripe_updated_at)
            .bind(i.due_date)
            .bind(now())
            .bind(stripe_clock)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() > 0)
    })?;
    if written && i.status != "open" {
        // Only an open invoice has a payment in flight or waiting for the customer.
        set_payment_state(db, &i.stripe_invoice_id, None).await?;
    }
    Ok(written)
}

/// Records how the open invoice's payment stands (`processing`, `requires_action`, or None), as read
/// with the invoice; the caller stores it only with a reading it stored.
pub async fn set_payment_state(
    db: &Db,
    invoice: &str,
    state: Option<&str>,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE invoices SET payment_state = $2 WHERE stripe_invoice_id = $1")
            .bind(invoice)
            .bind(state)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// (invoice, number, billing period, amount due, amount paid, hosted invoice URL).
type ProcessingRow = (
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<String>,
);

/// The tenant's open invoices whose bank debit is processing, newest first.
pub async fn processing(db: &Db, tenant: &TenantId) -> Result<Vec<ProcessingPayment>, sqlx::Error> {
    let rows: Vec<ProcessingRow> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT stripe_invoice_id, number, billing_period, amount_due_cents, amount_paid_cents,
                    hosted_invoice_url
             FROM invoices WHERE tenant_id = $1 AND status = 'open' AND payment_state = 'processing'
             ORDER BY stripe_created_at DESC, stripe_invoice_id DESC",
        )
        .bind(tenant.as_str())
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(
            |(id, number, billing_period, due, paid, url)| ProcessingPayment {
                stripe_invoice_id: id,
                number,
                billing_period,
                amount_cents: (due - paid).max(0),
                hosted_invoice_url: url,
            },
        )
        .collect())
}

/// An open invoice whose bank debit is processing: neither paid nor failed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingPayment {
    pub stripe_invoice_id: String,
    pub number: Option<String>,
    pub billing_period: Option<String>,
    pub amount_cents: i64,
    pub hosted_invoice_url: Option<String>,
}

/// The tenant's invoices, newest first.
pub async fn for_tenant(
    db: &Db,
    tenant_id: &str,
    limit: i64,
) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM invoices WHERE tenant_id = $1
             ORDER BY stripe_created_at DESC, stripe_invoice_id DESC LIMIT $2"
        ))
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map(|rows| rows.iter().map(|r| from_row!(r)).collect())
    })
}

/// Each tenant's newest invoice (a tie on creation time returns each of the tied; the caller picks one).
pub async fn newest_per_tenant(db: &Db) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM invoices i WHERE stripe_created_at =
                (SELECT MAX(stripe_created_at) FROM invoices j WHERE j.tenant_id = i.tenant_id)"
        ))
        .fetch_all(pool)
        .await
        .map(|rows| rows.iter().map(|r| from_row!(r)).collect())
    })
}

pub async fn get(db: &Db, id: &str) -> Result<Option<InvoiceRow>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!("SELECT {COLUMNS} FROM invoices WHERE stripe_invoice_id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
            .map(|r| r.map(|r| from_row!(&r)))
    })
}

pub type InvoiceLine = InvoiceLineRow;

/// An invoice Stripe failed to charge and that is still open: what the billing page warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPayment {
    pub stripe_invoice_id: String,
    pub number: Option<String>,
    /// `YYYY-MM` on a usage invoice; `None` on a subscription invoice.
    pub billing_period: Option<String>,
    /// What is still owed.
    pub amount_remaining_cents: i64,
    pub hosted_invoice_url: Option<String>,
    /// How many failed attempts we were told of (`invoice.payment_failed` events).
    pub attempts: i64,
    /// The first failure, by Stripe's clock.
    pub first_failed_at: DateTime<Utc>,
    /// The latest failure, by Stripe's clock.
    pub last_failed_at: DateTime<Utc>,
    /// The latest failure asked for the customer's authentication (`invoice.payment_action_required`
    /// no older than the latest `invoice.payment_failed`): only the customer confirming the payment on
    /// the hosted invoice page pays it; a new card does not help.
    pub action_required: bool,
}

type FailedRow = (
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<String>,
    String,
    DateTime<Utc>,
);

/// The tenant's open invoices with at least one failed payment (`invoice.payment_failed` or
/// `invoice.payment_action_required` received), latest failure first. An invoice paid since, or
/// voided, is no longer listed.
pub async fn failed_payments(
    db: &Db,
    tenant: &TenantId,
) -> Result<Vec<FailedPayment>, sqlx::Error> {
    let rows: Vec<FailedRow> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT i.stripe_invoice_id, i.number, i.billing_period, i.amount_due_cents,
                    i.amount_paid_cents, i.hosted_invoice_url, w.event_type, w.stripe_created_at
             FROM invoices i
             JOIN webhook_events w ON w.object_id = i.stripe_invoice_id
             WHERE i.tenant_id = $1 AND i.status = 'open'
               AND w.event_type IN ('invoice.payment_failed', 'invoice.payment_action_required')",
        )
        .bind(tenant.as_str())
        .fetch_all(pool)
        .await
    })?;
    // One entry per invoice, folded here rather than by GROUP BY: both engines then decode plain columns.
    let mut out: Vec<FailedPayment> = Vec::new();
    let mut latest: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (id, number, billing_period, due, paid, url, kind, at) in rows {
        let failed = kind == "invoice.payment_failed";
        let i = match out.iter().position(|f| f.stripe_invoice_id == id) {
            Some(i) => i,
            None => {
                out.push(FailedPayment {
                    stripe_invoice_id: id,
                    number,
                    billing_period,
                    amount_remaining_cents: (due - paid).max(0),
                    hosted_invoice_url: url,
                    attempts: 0,
                    first_failed_at: at,
                    last_failed_at: at,
                    action_required: false,
                });
                latest.push((DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MIN_UTC));
                out.len() - 1
            }
        };
        let f = &mut out[i];
        f.first_failed_at = f.first_failed_at.min(at);
        f.last_failed_at = f.last_failed_at.max(at);
        if failed {
            f.attempts += 1;
            latest[i].0 = latest[i].0.max(at);
        } else {
            latest[i].1 = latest[i].1.max(at);
        }
    }
    for (f, (failed_at, action_at)) in out.iter_mut().zip(latest) {
        f.attempts = f.attempts.max(1);
        f.action_required = action_at > DateTime::<Utc>::MIN_UTC && action_at >= failed_at;
    }
    out.sort_by(|a, b| {
        b.last_failed_at
            .cmp(&a.last_failed_at)
            .then_with(|| a.stripe_invoice_id.cmp(&b.stripe_invoice_id))
    });
    Ok(out)
}
