//! The history of runs (`billing_runs`): started from the command line, the API, the pages or the scheduler.

use super::run::{run_period, RunError, RunOptions};
use super::run_report::RunReport;
use crate::db::Db;
use crate::domain::time::now;
use crate::domain::BillingPeriod;
use crate::state::AppState;
use crate::with_pool;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    pub period: String,
    pub dry_run: bool,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub report: Option<Value>,
}

const COLUMNS: &str =
    "run_id, period, dry_run, status, trigger, started_at, finished_at, report_json";

macro_rules! from_row {
    ($r:expr) => {{
        let r = $r;
        let report: Option<String> = r.get("report_json");
        RunRecord {
            run_id: r.get("run_id"),
            period: r.get("period"),
            dry_run: r.get("dry_run"),
            status: r.get("status"),
            trigger: r.get("trigger"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            report: report.and_then(|s| serde_json::from_str(&s).ok()),
        }
    }};
}

/// Records a run as started (before it is spawned, so that its id can be read at once).
pub async fn insert(
    db: &Db,
    run_id: &str,
    period: BillingPeriod,
    dry_run: bool,
    trigger: &str,
) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(
            "INSERT INTO billing_runs (run_id, period, dry_run, status, trigger, started_at)
             VALUES ($1, $2, $3, 'running', $4, $5)",
        )
        .bind(run_id)
        .bind(period.to_string())
        .bind(dry_run)
        .bind(trigger)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
    })
}

async fn finish(db: &Db, run_id: &str, status: &str, report: &Value) -> Result<(), sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query("UPDATE billing_runs SET status = $2, finished_at = $3, report_json = $4 WHERE run_id = $1")
            .bind(run_id)
            .bind(status)
            .bind(now())
            .bind(report.to_string())
            .execute(pool)
            .await
            .map(|_| ())
    })
}

pub async fn get(db: &Db, run_id: &str) -> Result<Option<RunRecord>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!("SELECT {COLUMNS} FROM billing_runs WHERE run_id = $1"))
            .bind(run_id)
            .fetch_optional(pool)
            .await
            .map(|r| r.map(|r| from_row!(&r)))
    })
}

pub async fn recent(db: &Db, limit: i64) -> Result<Vec<RunRecord>, sqlx::Error> {
    with_pool!(db, pool => {
        sqlx::query(&format!("SELECT {COLUMNS} FROM billing_runs ORDER BY started_at DESC, run_id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(pool)
            .await
            .map(|rows| rows.iter().map(|r| from_row!(r)).collect())
    })
}

/// Runs the period and records it in the history; the record's status says how it ended
/// (`completed` also when some tenants failed: their errors are in the report, and a re-run finishes them).
pub async fn execute(
    state: &AppState,
    run_id: &str,
    period: BillingPeriod,
    opts: RunOptions,
    trigger: &str,
) -> Result<RunReport, RunError> {
    // Take the period first, so a runner that finds it taken leaves no run behind in the history
    // (the lease is re-entrant for its holder, so the run itself takes it again without a hitch).
    let ttl = i64::from(state.settings.billing.lease_seconds);
    if !opts.dry_run && !super::lease::acquire(&state.db, period, &opts.holder, ttl).await? {
        return Err(RunError::InProgress(period));
    }
    insert(&state.db, run_id, period, opts.dry_run, trigger).await?;
    complete(state, run_id, period, opts).await
}

/// Runs a period whose run is already recorded by [`insert`], and records how it ended.
pub async fn complete(
    state: &AppState,
    run_id: &str,
    period: BillingPeriod,
    opts: RunOptions,
) -> Result<RunReport, RunError> {
    let result = run_period(state, period, opts).await;
    let (status, report) = match &result {
        Ok(r) => (
            "completed",
            serde_json::to_value(r).expect("report serializes"),
        ),
        Err(e) => ("failed", json!({"error": e.to_string()})),
    };
    finish(&state.db, run_id, status, &report).await?;
    result
}

pub fn new_run_id() -> String {
    format!("run_{}", uuid::Uuid::new_v4().simple())
}
