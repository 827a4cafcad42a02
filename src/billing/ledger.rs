//! The ledger: per tenant and period, the step the invoice has reached and its lines, so that every
//! re-run continues where the last one stopped.

use super::lines::PlannedLine;
use crate::db::Db;
use crate::domain::time::now;
use crate::domain::BillingPeriod;
use crate::with_pool;
use sqlx::Row;

/// The key of the tenant's invoice for the period: the ledger's entry, the Stripe writes' idempotency
/// keys and the claim of the usage it bills all start from it.
pub fn invoice_key(tenant: &str, period: BillingPeriod) -> String {
    format!("invoice:{tenant}:{period}")
}

/// How far a tenant's invoice for a period has come. Ordered: a later step implies the earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// The usage is claimed and the lines are recorded here.
    Claimed,
    /// The draft invoice exists in Stripe.
    InvoiceCreated,
    /// Every line is an invoice item on that invoice.
    LinesAdded,
    Finalized,
    /// Charged or sent: nothing left to do.
    Done,
    /// Nothing to bill (see the reason); final.
    Skipped,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Claimed => "claimed",
            Step::InvoiceCreated => "invoice_created",
            Step::LinesAdded => "lines_added",
            Step::Finalized => "finalized",
            Step::Done => "done",
            Step::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Step {
        match s {
            "invoice_created" => Step::InvoiceCreated,
            "lines_added" => Step::LinesAdded,
            "finalized" => Step::Finalized,
            "done" => Step::Done,
            "skipped" => Step::Skipped,
            _ => Step::Claimed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub step: Step,
    pub skip_reason: Option<String>,
    pub stripe_invoice_id: Option<String>,
    pub total_cents: i64,
    pub attempts: i32,
    /// Bumped when Stripe saved a failure under the entry's idempotency keys: later writes use fresh
    /// keys (after looking in Stripe for what the failed write may have made).
    pub key_generation: i32,
    pub lines: Vec<LedgerLine>,
}

#[derive(Debug, Clone)]
pub struct LedgerLine {
    pub line: PlannedLine,
    pub stripe_invoice_item_id: Option<String>,
}

pub async fn get(
    db: &Db,
    tenant: &str,
    period: BillingPeriod,
) -> Result<Option<Entry>, sqlx::Error> {
    let p = period.to_string();
    with_pool!(db, pool => {
        let Some(row) = sqlx::query(
            "SELECT step, skip_reason, stripe_invoice_id, total_cents, attempts, key_generation FROM billing_ledger
             WHERE tenant_id = $1 AND period = $2",
        )
        .bind(tenant)
        .bind(&p)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(None);
        };
        let lines = sqlx::query(
            "SELECT line_no, usage_period, kind, description, quantity, amount_cents, stripe_invoice_item_id
             FROM billing_ledger_lines WHERE tenant_id = $1 AND period = $2 ORDER BY line_no",
        )
        .bind(tenant)
        .bind(&p)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| LedgerLine {
            line: PlannedLine {
                line_no: r.get("line_no"),
                usage_period: r.get::<String, _>("usage_period").parse().unwrap_or(period),
                kind: if r.get::<String, _>("kind") == "calls" { "calls" } else { "voice" },
                description: r.get("description"),
                quantity: r.get("quantity"),
                amount_cents: r.get("amount_cents"),
            },
            stripe_invoice_item_id: r.get("stripe_invoice_item_id"),
        })
        .collect();
        Ok(Some(Entry {
            step: Step::parse(&row.get::<String, _>("step")),
            skip_reason: row.get("skip_reason"),
            stripe_invoice_id: row.get("stripe_invoice_id"),
            total_cents: row.get("total_cents"),
            attempts: row.get("attempts"),
            key_generation: row.get("key_generation"),
            lines,
        }))
    })
}

/// Records the claimed lines (or a final skip) once; a repeat keeps what is there, since the claim it
/// comes from is itself idempotent and gives the same lines.
pub async fn record_claim(
    db: &Db,
    tenant: &str,
    customer: &str,
    period: BillingPeriod,
    lines: &[PlannedLine],
    skip_reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    let p = period.to_string();
    let total: i64 = lines.iter().map(|l| l.amount_cents).sum();
    let step = if skip_reason.is_some() {
        Step::Skipped
    } else {
        Step::Claimed
    };
    let at = now();
    crate::begin_write!(db, pool, tx => {
        let inserted = sqlx::query(
            "INSERT INTO billing_ledger (tenant_id, period, step, skip_reason, stripe_customer_id, total_cents,
                attempts, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT (tenant_id, period) DO NOTHING",
        )
        .bind(tenant)
        .bind(&p)
        .bind(step.as_str())
        .bind(skip_reason)
        .bind(customer)
        .bind(total)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            for l in lines {
                sqlx::query(
                    "INSERT INTO billing_ledger_lines (tenant_id, period, line_no, usage_period, kind, description,
                        quantity, amount_cents)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(tenant)
                .bind(&p)
                .bind(l.line_no)
                .bind(l.usage_period.to_string())
                .bind(l.kind)
                .bind(&l.description)
                .bind(l.quantity)
                .bind(l.amount_cents)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    })
}

/// Moves the entry forward to `step` (never back), optionally recording the invoice id.
pub async fn advance(
    db: &Db,
    tenant: &str,
    period: BillingPeriod,
    step: Step,
    invoice_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    // Only these steps are stored by `advance`; the ordering guard keeps a slow twin from moving it back.
    let earlier: &[&str] = match step {
        Step::InvoiceCreated => &["claimed"],
        Step::LinesAdded => &["claimed", "invoice_created"],
        Step::Finalized => &["claimed", "invoice_created", "lines_added"],
        Step::Done => &["claimed", "invoice_created", "lines_added", "finalized"],
        Step::Claimed | Step::Skipped => &[],
    };
    let list = earlier
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    if list.is_empty() {
        return Ok(());
    }
    with_pool!(db, pool => {
        sqlx::query(&format!(
            "UPDATE billing_ledger SET step = $3, stripe_invoice_id = COALESCE($4, stripe_invoice_id),
                last_error = NULL, updated_at = $5
             WHERE tenant_id = $1 AND period = $2 AND step IN ({list})"
        ))
        .bind(tenant)
        .bind(period.to_string())
        .bind(step.as_str())
        .bind(invoice_id)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
    })
}

pub async fn set_line_item(
    db: &Db,
    tenant: &str,
    period: BillingPeriod,
    line_no: i32,
    item_id: &str,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE billing_ledger_lines SET stripe_invoice_item_id = $4
             WHERE tenant_id = $1 AND period = $2 AND line_no = $3",
        )
        .bind(tenant)
        .bind(period.to_string())
        .bind(line_no)
        .bind(item_id)
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Counts an attempt; with `error`, records why it failed.
pub async fn attempt(
    db: &Db,
    tenant: &str,
    period: BillingPeriod,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE billing_ledger SET attempts = attempts + 1, last_error = COALESCE($3, last_error), updated_at = $4
             WHERE tenant_id = $1 AND period = $2",
        )
        .bind(tenant)
        .bind(period.to_string())
        .bind(error)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// Moves the entry's idempotency keys to a fresh generation: Stripe saved a failure (5xx) under the
/// current ones and would replay it to every retry for a day.
pub async fn fresh_keys(db: &Db, tenant: &str, period: BillingPeriod) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "UPDATE billing_ledger SET key_generation = key_generation + 1, updated_at = $3
             WHERE tenant_id = $1 AND period = $2",
        )
        .bind(tenant)
        .bind(period.to_string())
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
    })
}

/// What the tenant's invoices other than `run_period`'s billed of each of `periods`' voice usage: the
/// words their claims took (a slice too small for a line still took its words) and the cents of their
/// voice lines.
///
/// Only entries already recorded count, words and cents alike: a claim whose lines are not recorded yet
/// (a run in flight, or one that stopped in between) is left out of both, so the two always match.
pub async fn billed_voice(
    db: &Db,
    tenant: &str,
    run_period: BillingPeriod,
    periods: impl IntoIterator<Item = BillingPeriod>,
) -> Result<super::lines::BilledByPeriod, sqlx::Error> {
    use crate::usage::rating::Billed;
    use std::collections::BTreeSet;
    let mut out = super::lines::BilledByPeriod::new();
    let periods: BTreeSet<BillingPeriod> = periods.into_iter().collect();
    if periods.is_empty() {
        return Ok(out);
    }
    // Read first: the words and cents below are taken from these entries only, whatever is recorded
    // meanwhile (an entry and its lines are recorded in one transaction, after its claim).
    let entries: BTreeSet<String> = with_pool!(db, pool => {
        sqlx::query_scalar::<_, String>(
            "SELECT period FROM billing_ledger WHERE tenant_id = $1 AND period <> $2",
        )
        .bind(tenant)
        .bind(run_period.to_string())
        .fetch_all(pool)
        .await
    })?
    .into_iter()
    .collect();
    if entries.is_empty() {
        return Ok(out);
    }
    let keys: BTreeSet<String> = entries
        .iter()
        .filter_map(|p| p.parse().ok())
        .map(|p| invoice_key(tenant, p))
        .collect();
    for period in periods {
        let words = crate::usage::billable::billed_words_by_claim(db, tenant, period).await?;
        let cents: Vec<(String, i64)> = with_pool!(db, pool => {
            sqlx::query_as(
                "SELECT period, CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM billing_ledger_lines
                 WHERE tenant_id = $1 AND usage_period = $2 AND kind = 'voice'
                 GROUP BY period",
            )
            .bind(tenant)
            .bind(period.to_string())
            .fetch_all(pool)
            .await
        })?;
        let billed = Billed {
            voice_words: words
                .iter()
                .filter(|(key, _)| keys.contains(key))
                .map(|(_, w)| w)
                .sum(),
            voice_cents: crate::domain::Cents(
                cents
                    .iter()
                    .filter(|(p, _)| entries.contains(p))
                    .map(|(_, c)| c)
                    .sum(),
            ),
        };
        if billed != Billed::default() {
            out.insert(period, billed);
        }
    }
    Ok(out)
}

/// What each invoice the run made for the tenant bills, by Stripe invoice id: its voice and call lines
/// summed (own period and late usage together), as recorded when the run planned them.
pub async fn invoiced_usage(
    db: &Db,
    tenant: &str,
) -> Result<std::collections::HashMap<String, crate::usage::rating::InvoicedUsage>, sqlx::Error> {
    use crate::usage::rating::{InvoicedUsage, LineKind};
    let rows: Vec<(String, String, i64, i64)> = with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT e.stripe_invoice_id, l.kind, CAST(SUM(l.quantity) AS BIGINT),
                    CAST(SUM(l.amount_cents) AS BIGINT)
             FROM billing_ledger e
             JOIN billing_ledger_lines l ON l.tenant_id = e.tenant_id AND l.period = e.period
             WHERE e.tenant_id = $1 AND e.stripe_invoice_id IS NOT NULL
             GROUP BY e.stripe_invoice_id, l.kind",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await
    })?;
    let mut out: std::collections::HashMap<String, InvoicedUsage> = Default::default();
    for (invoice, kind, quantity, cents) in rows {
        let usage = out.entry(invoice).or_default();
        if let Some(kind) = LineKind::parse(&kind) {
            usage.add(kind, quantity, crate::domain::Cents(cents));
        }
    }
    Ok(out)
}
