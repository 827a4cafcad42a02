//! Storage behind `billing::health`: usage claims with no ledger entry, ledger entries left part-way,
//! each run period's lease and latest run, and the open usage of tenants with a subscription.
//!
//! The per-period queries are asked only about the few periods that need a look (see `billing::health`);
//! none reads `usage_events`, and the rollups are only probed per tenant through their `(tenant_id, day)`
//! indexes.

use super::Db;
use crate::domain::BillingPeriod;
use crate::with_pool;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

/// A claim of a tenant's usage by the monthly run (`usage_claims`, key `invoice:{tenant}:{period}`)
/// for which the ledger has no entry of that tenant and period.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimWithoutLedger {
    pub tenant_id: String,
    /// `YYYY-MM`, the end of the claim's key.
    pub period: String,
    pub claimed_at: DateTime<Utc>,
}

/// The claims of `period` whose ledger entry does not exist, looked up by key for each tenant
/// (primary keys on both sides).
pub async fn claims_without_ledger(
    db: &Db,
    period: BillingPeriod,
) -> Result<Vec<ClaimWithoutLedger>, sqlx::Error> {
    with_pool!(db, pool => {
        let rows = sqlx::query(
            "SELECT t.id AS tenant_id, c.claimed_at FROM tenants t
             JOIN usage_claims c ON c.tenant_id = t.id AND c.billed_by = 'invoice:' || t.id || ':' || $1
             WHERE NOT EXISTS (SELECT 1 FROM billing_ledger l WHERE l.tenant_id = t.id AND l.period = $1)
             ORDER BY c.claimed_at, t.id",
        )
        .bind(period.to_string())
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ClaimWithoutLedger {
                    tenant_id: r.try_get("tenant_id")?,
                    period: period.to_string(),
                    claimed_at: r.try_get("claimed_at")?,
                })
            })
            .collect()
    })
}

/// The claims of demo tenants, of any period, whose ledger entry does not exist: a run skips a demo
/// tenant before looking at its claims, so a period's completion says nothing about them.
pub async fn demo_claims_without_ledger(db: &Db) -> Result<Vec<ClaimWithoutLedger>, sqlx::Error> {
    with_pool!(db, pool => {
        let rows = sqlx::query(
            "SELECT c.tenant_id, substr(c.billed_by, length(c.billed_by) - 6) AS period, c.claimed_at
             FROM tenants t JOIN usage_claims c ON c.tenant_id = t.id
             WHERE t.is_demo = $1
               AND c.billed_by = 'invoice:' || t.id || ':' || substr(c.billed_by, length(c.billed_by) - 6)
               AND NOT EXISTS (
                   SELECT 1 FROM billing_ledger l
                   WHERE l.tenant_id = t.id AND l.period = substr(c.billed_by, length(c.billed_by) - 6))
             ORDER BY c.claimed_at, c.tenant_id",
        )
        .bind(true)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ClaimWithoutLedger {
                    tenant_id: r.try_get("tenant_id")?,
                    period: r.try_get("period")?,
                    claimed_at: r.try_get("claimed_at")?,
                })
            })
            .collect()
    })
}

/// The tenants whose ledger entry of `period` is at a step other than `final_steps` (`done`,
/// `skipped`).
pub async fn entries_not_final(
    db: &Db,
    period: BillingPeriod,
    final_steps: [&str; 2],
) -> Result<Vec<String>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT l.tenant_id FROM tenants t
             JOIN billing_ledger l ON l.tenant_id = t.id AND l.period = $1
             WHERE l.step <> $2 AND l.step <> $3
             ORDER BY l.tenant_id",
        )
        .bind(period.to_string())
        .bind(final_steps[0])
        .bind(final_steps[1])
        .fetch_all(pool)
        .await
    })
}

/// The latest live (not dry) run of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    pub run_id: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub started_at: DateTime<Utc>,
}

/// A period that has been run: its lease (every live run takes it first) and its latest live run.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodRun {
    pub period: String,
    /// Until when the lease is held; a run in progress keeps it in the future.
    pub lease_until: DateTime<Utc>,
    /// When a run last ended with every tenant billed or skipped.
    pub completed_at: Option<DateTime<Utc>>,
    pub last_run: Option<LastRun>,
}

/// Every period before `before` that a live run has taken, with its latest live run (found through
/// the `(period, started_at)` index): one row per period, not per run.
pub async fn run_periods(db: &Db, before: BillingPeriod) -> Result<Vec<PeriodRun>, sqlx::Error> {
    with_pool!(db, pool => {
        let rows = sqlx::query(
            "SELECT l.period, l.lease_until, l.completed_at, r.run_id, r.status, r.started_at
             FROM billing_period_leases l
             LEFT JOIN billing_runs r ON r.run_id = (
                 SELECT r2.run_id FROM billing_runs r2
                 WHERE r2.period = l.period AND r2.dry_run = $2
                 ORDER BY r2.started_at DESC, r2.run_id DESC LIMIT 1)
             WHERE l.period < $1
             ORDER BY l.period",
        )
        .bind(before.to_string())
        .bind(false)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                let run_id: Option<String> = r.try_get("run_id")?;
                let last_run = match run_id {
                    Some(run_id) => Some(LastRun {
                        run_id,
                        status: r.try_get("status")?,
                        started_at: r.try_get("started_at")?,
                    }),
                    None => None,
                };
                Ok(PeriodRun {
                    period: r.try_get("period")?,
                    lease_until: r.try_get("lease_until")?,
                    completed_at: r.try_get("completed_at")?,
                    last_run,
                })
            })
            .collect()
    })
}

/// A run's report as stored (JSON), if it has one.
pub async fn run_report(db: &Db, run_id: &str) -> Result<Option<String>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, Option<String>>("SELECT report_json FROM billing_runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await
            .map(Option::flatten)
    })
}

// The two queries below go tenant by tenant (a scalar subquery per tenant row, which neither engine
// turns into a join): one probe of a rollup index per tenant, whatever the size of the rollups table.
// They read the stored rollups (days and whether billed, never sums), so no tail of events; on
// PostgreSQL open and billed rollups have an index each (migration 0010), hence a probe of each.

/// The earliest local day before `before_day` with usage of any tenant, claimed or not.
pub async fn first_usage_day(
    db: &Db,
    before_day: NaiveDate,
) -> Result<Option<NaiveDate>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, Option<NaiveDate>>(
            "SELECT MIN(x.first_day) FROM (
                 SELECT (SELECT MIN(u.day) FROM usage_rollups_folded u
                         WHERE u.tenant_id = t.id AND u.billed_by IS NULL AND u.day < $1) AS first_day
                 FROM tenants t
                 UNION ALL
                 SELECT (SELECT MIN(u.day) FROM usage_rollups_folded u
                         WHERE u.tenant_id = t.id AND u.billed_by IS NOT NULL AND u.day < $1)
                 FROM tenants t
             ) x",
        )
        .bind(before_day)
        .fetch_one(pool)
        .await
    })
}

/// How many tenants with a subscription, not demo accounts, have open usage on a local day in
/// `[from_day, to_day)`.
pub async fn subscribed_with_open_usage(
    db: &Db,
    from_day: NaiveDate,
    to_day: NaiveDate,
) -> Result<i64, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (
                 SELECT (SELECT u.id FROM usage_rollups_folded u
                         WHERE u.tenant_id = t.id AND u.billed_by IS NULL AND u.day >= $1 AND u.day < $2
                         LIMIT 1) AS open_id
                 FROM tenants t
                 WHERE t.is_demo = $3 AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = t.id)
             ) x
             WHERE x.open_id IS NOT NULL",
        )
        .bind(from_day)
        .bind(to_day)
        .bind(false)
        .fetch_one(pool)
        .await
    })
}
