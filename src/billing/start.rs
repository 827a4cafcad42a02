//! Starting the monthly run for a period from the API or the admin page: only a period that has ended,
//! audited, waited for or in the background.

use super::report::RunReport;
use super::run::RunError;
use super::{runs, RunOptions};
use crate::db::audit;
use crate::domain::BillingPeriod;
use crate::state::AppState;
use serde::Serialize;
use utoipa::ToSchema;

/// A run started in the background (`wait: false`).
#[derive(Serialize, ToSchema)]
pub struct RunAccepted {
    pub run_id: String,
    #[schema(example = "running")]
    pub status: &'static str,
}

/// How a started run answers: its report, or its id while it goes on.
pub enum RunStarted {
    Finished(RunReport),
    Accepted(RunAccepted),
}

/// Why a run was not started. The text is the sentence a person reads; `crate::error` picks the status.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("period: {0}; write it as YYYY-MM.")]
    InvalidPeriod(String),
    #[error(
        "period: {period} has not ended yet; the latest period that can be billed is {latest}."
    )]
    PeriodNotClosed {
        period: BillingPeriod,
        latest: BillingPeriod,
    },
    /// Another runner holds the period (the sentence is the run's own, capitalized).
    #[error("{0}")]
    InProgress(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Parses the period and refuses periods that have not ended (their usage is still coming in).
pub fn closed_period(state: &AppState, raw: &str) -> Result<BillingPeriod, StartError> {
    let period = raw
        .parse::<BillingPeriod>()
        .map_err(|e| StartError::InvalidPeriod(e.to_string()))?;
    let current =
        BillingPeriod::containing(crate::domain::time::now(), state.settings.billing.timezone);
    if period >= current {
        return Err(StartError::PeriodNotClosed {
            period,
            latest: current.prev(),
        });
    }
    Ok(period)
}

/// Starts a run as `actor`; with `wait`, returns its report, else its id at once.
pub async fn start_run(
    state: &AppState,
    actor: &str,
    period: BillingPeriod,
    dry_run: bool,
    wait: bool,
) -> Result<RunStarted, StartError> {
    let run_id = runs::new_run_id();
    let opts = RunOptions::new(state, dry_run);
    audit::record(
        &state.db,
        actor,
        if dry_run {
            "billing.dry_run"
        } else {
            "billing.run"
        },
        None,
        &format!("{period} {run_id}"),
    )
    .await?;
    if !wait {
        runs::insert(&state.db, &run_id, period, dry_run, actor).await?;
        let (state, run_id2) = (state.clone(), run_id.clone());
        tokio::spawn(async move {
            if let Err(e) = runs::complete(&state, &run_id2, period, opts).await {
                tracing::warn!(run_id = %run_id2, error = %e, "run failed");
            }
        });
        return Ok(RunStarted::Accepted(RunAccepted {
            run_id,
            status: "running",
        }));
    }
    match runs::execute(state, &run_id, period, opts, actor).await {
        Ok(report) => Ok(RunStarted::Finished(report)),
        Err(e @ RunError::InProgress(_)) => Err(StartError::InProgress(format!(
            "{}.",
            capitalize(&e.to_string())
        ))),
        Err(RunError::Db(e)) => Err(e.into()),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
