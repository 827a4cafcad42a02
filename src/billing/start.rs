//! Starting the monthly run for a period from the API or the admin page: only a period that has ended,
//! audited, waited for or in the background.

use super::report::RunReport;
use super::run::RunError;
use super::{runs, RunOptions};
use crate::db::audit;
use crate::domain::BillingPeriod;
use crate::error::{ApiError, ApiResult, ErrorCode};
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

/// Parses the period and refuses periods that have not ended (their usage is still coming in).
pub fn closed_period(state: &AppState, raw: &str) -> ApiResult<BillingPeriod> {
    let period: BillingPeriod = raw.parse().map_err(|e| {
        ApiError::unprocessable(
            ErrorCode::InvalidPeriod,
            format!("period: {e}; write it as YYYY-MM."),
        )
    })?;
    let current =
        BillingPeriod::containing(crate::domain::time::now(), state.settings.billing.timezone);
    if period >= current {
        return Err(ApiError::unprocessable(
            ErrorCode::PeriodNotClosed,
            format!(
                "period: {period} has not ended yet; the latest period that can be billed is {}.",
                current.prev()
            ),
        ));
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
) -> ApiResult<RunStarted> {
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
        Err(e @ RunError::InProgress(_)) => Err(ApiError::conflict(
            ErrorCode::RunInProgress,
            format!("{}.", capitalize(&e.to_string())),
        )),
        Err(RunError::Db(e)) => Err(e.into()),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Whether a run started under a given id is new.
pub enum Once {
    /// Started in the background under that id.
    Started,
    /// A run with that id exists already: the form that carries it was sent before.
    AlreadyStarted,
}

/// Starts a run in the background under `run_id`, which the form that asks for it carries: the run's
/// primary key makes a second submit of the same form (a double click, back and resubmit) start nothing,
/// on every replica alike.
pub async fn start_once(
    state: &AppState,
    actor: &str,
    run_id: &str,
    period: BillingPeriod,
    dry_run: bool,
) -> ApiResult<Once> {
    match runs::insert(&state.db, run_id, period, dry_run, actor).await {
        Ok(()) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Ok(Once::AlreadyStarted)
        }
        Err(e) => return Err(e.into()),
    }
    let action = if dry_run {
        "billing.dry_run"
    } else {
        "billing.run"
    };
    audit::record(
        &state.db,
        actor,
        action,
        None,
        &format!("{period} {run_id}"),
    )
    .await?;
    let (state, run_id) = (state.clone(), run_id.to_owned());
    let opts = RunOptions::new(&state, dry_run);
    tokio::spawn(async move {
        if let Err(e) = runs::complete(&state, &run_id, period, opts).await {
            tracing::warn!(run_id = %run_id, error = %e, "run failed");
        }
    });
    Ok(Once::Started)
}

/// What a live run of `period` would bill now: a dry run, not recorded in the history (it is the
/// question a person asks before confirming, not a run).
pub async fn preview(state: &AppState, period: BillingPeriod) -> ApiResult<RunReport> {
    super::run_period(state, period, RunOptions::new(state, true))
        .await
        .map_err(|e| match e {
            RunError::InProgress(_) => ApiError::conflict(
                ErrorCode::RunInProgress,
                format!("{}.", capitalize(&e.to_string())),
            ),
            RunError::Db(e) => e.into(),
        })
}
