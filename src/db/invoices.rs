//! Reads of our mirror of Stripe invoices.

use super::Db;
use crate::domain::TenantId;
use crate::with_pool;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An invoice as the invoices route and the dashboard show it (API.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvoiceView {
    pub stripe_invoice_id: String,
    pub status: String,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub period_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub period_end: Option<DateTime<Utc>>,
    pub amount_due_cents: i64,
    pub amount_paid_cents: i64,
    pub currency: String,
    pub hosted_invoice_url: Option<String>,
    pub lines: Vec<InvoiceLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InvoiceLine {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub amount_cents: i64,
}

type Row = (
    String,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    i64,
    i64,
    String,
    Option<String>,
    String,
);

/// The tenant's latest invoices, newest first.
pub async fn recent(
    db: &Db,
    tenant: &TenantId,
    limit: u32,
) -> Result<Vec<InvoiceView>, sqlx::Error> {
    let rows: Vec<Row> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT stripe_invoice_id, status, period_start, period_end, amount_due_cents,
                    amount_paid_cents, currency, hosted_invoice_url, lines_json
             FROM invoices WHERE tenant_id = $1
             ORDER BY stripe_created_at DESC, stripe_invoice_id DESC
             LIMIT $2",
        )
        .bind(tenant.as_str())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(
            |(id, status, period_start, period_end, due, paid, currency, url, lines)| InvoiceView {
                stripe_invoice_id: id,
                status,
                period_start,
                period_end,
                amount_due_cents: due,
                amount_paid_cents: paid,
                currency,
                hosted_invoice_url: url,
                // Written by our own sync; an unreadable value shows no lines rather than failing the page.
                lines: serde_json::from_str(&lines).unwrap_or_default(),
            },
        )
        .collect())
}
