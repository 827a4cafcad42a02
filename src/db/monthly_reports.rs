//! The operators' monthly reports' queries: usage and revenue by organization.

use super::Db;
use crate::domain::{BillingPeriod, Cents};
use crate::with_pool;
use chrono_tz::Tz;
use serde::Serialize;

/// One organization's recorded usage in a month (billed or not, free or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub tenant_id: String,
    pub name: String,
    pub stt_words: i64,
    pub tts_words: i64,
    pub calls: i64,
}

/// One organization's paid invoices in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RevenueRow {
    pub tenant_id: String,
    pub name: String,
    pub invoices: i64,
    pub revenue_cents: Cents,
}

/// Usage by organization for the month, from the daily rollups of its local days.
pub async fn usage_by_organization(
    db: &Db,
    month: BillingPeriod,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64, i64)> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT t.id, t.name,
                    CAST(COALESCE(SUM(r.stt_words), 0) AS BIGINT),
                    CAST(COALESCE(SUM(r.tts_words), 0) AS BIGINT),
                    CAST(COALESCE(SUM(r.phone_calls), 0) AS BIGINT)
             FROM usage_rollups r JOIN tenants t ON t.id = r.tenant_id
             WHERE r.day >= $1 AND r.day < $2
             GROUP BY t.id, t.name
             ORDER BY t.name, t.id",
        )
        .bind(month.first_day())
        .bind(month.end_day())
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, name, stt_words, tts_words, calls)| UsageRow {
            tenant_id,
            name,
            stt_words,
            tts_words,
            calls,
        })
        .collect())
}

/// Revenue by organization: invoices paid during the month (in the billing time zone).
pub async fn revenue_by_organization(
    db: &Db,
    month: BillingPeriod,
    tz: Tz,
) -> Result<Vec<RevenueRow>, sqlx::Error> {
    let (start, end) = month.bounds(tz);
    let rows: Vec<(String, String, i64, i64)> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT t.id, t.name, COUNT(*), CAST(COALESCE(SUM(i.amount_paid_cents), 0) AS BIGINT)
             FROM invoices i JOIN tenants t ON t.id = i.tenant_id
             WHERE i.status = 'paid' AND i.paid_at >= $1 AND i.paid_at < $2
             GROUP BY t.id, t.name
             ORDER BY t.name, t.id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, name, invoices, cents)| RevenueRow {
            tenant_id,
            name,
            invoices,
            revenue_cents: Cents(cents),
        })
        .collect())
}
