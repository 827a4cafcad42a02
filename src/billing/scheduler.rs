//! The scheduler inside `serve`: wakes regularly (`BILLING_SCHEDULER_INTERVAL_SECONDS`) and, on or after
//! the 1st in the billing time zone, runs every closed period not yet completed, oldest first (catching up
//! after downtime); then the collection work that is due (`collect::tick`: open invoices after a change of
//! payment method, the usage invoices' retries). Replicas may all run it: the period lease lets one bill a
//! period at a time, and every payment attempt is one idempotent write.

use super::{lease, run_log, RunOptions};
use crate::domain::time::now;
use crate::domain::BillingPeriod;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use std::time::Duration;

/// How far back it catches up.
const MAX_CATCH_UP_MONTHS: u32 = 12;

/// Closed periods whose run has not completed, oldest first, from the first period with usage.
pub async fn due_periods(state: &AppState) -> Result<Vec<BillingPeriod>, sqlx::Error> {
    let tz = state.settings.billing.timezone;
    let current = BillingPeriod::containing(now(), tz);
    let first_usage = crate::db::rollups::first_day(&state.db).await?;
    let Some(first) = first_usage.map(BillingPeriod::of_day) else {
        return Ok(Vec::new());
    };
    let mut due = Vec::new();
    let mut p = current.prev();
    for _ in 0..MAX_CATCH_UP_MONTHS {
        if p < first {
            break;
        }
        if lease::completed_at(&state.db, p).await?.is_none() {
            due.push(p);
        }
        p = p.prev();
    }
    due.reverse();
    Ok(due)
}

/// One wake-up: runs the due periods oldest first and stops at the first that does not complete, so
/// that a later period never bills an earlier period's usage as "late usage" while the earlier one is
/// still unfinished. Returns the periods run and whether each completed.
pub async fn tick(state: &AppState) -> Result<Vec<(BillingPeriod, bool)>, sqlx::Error> {
    let mut ran = Vec::new();
    for period in due_periods(state).await? {
        let opts = RunOptions::new(state, false);
        let run_id = run_log::new_run_id();
        let completed = match run_log::execute(state, &run_id, period, opts, "scheduler").await {
            Ok(report) => {
                tracing::info!(%period, %run_id, failed = report.failed.len(), "scheduled run done");
                report.failed.is_empty()
            }
            Err(e) => {
                tracing::info!(%period, error = %e, "scheduled run not done");
                false
            }
        };
        ran.push((period, completed));
        if !completed {
            tracing::warn!(%period, "period unfinished; later periods wait for it");
            break;
        }
    }
    Ok(ran)
}

/// Runs until shutdown is asked: a run in progress finishes its period first (and, were it cut short,
/// the next run continues it, since every step is idempotent).
pub async fn run(state: AppState, mut shutdown: Shutdown) {
    let every = Duration::from_secs(u64::from(state.settings.billing.scheduler_interval_seconds));
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = %e, "scheduler could not read the database");
        }
        super::collect::tick(&state).await;
        if shutdown.sleep(every).await {
            tracing::info!("billing scheduler stopped");
            return;
        }
    }
}
