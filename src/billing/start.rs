//! Starting the monthly run for a period from the API or the admin page: only a period that has ended,
//! audited, waited for or in the background.

use super::run::RunError;
use super::run_report::RunReport;
use super::{run_log, RunOptions};
use crate::db::audit;
use crate::domain::BillingPeriod;
use crate::state::AppState;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// A run going on in the background (`wait: false`, or a run still going after the wait).
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

/// Why a run was not started. The text is the sentence a person reads; `crate::http::error` picks the status.
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

/// Starts a run as `actor`; with `wait`, returns its report if it ends within the settings' `run_wait`
/// (the contract's 50 s), else its id then;
/// without, its id at once. The run goes on in a task of its own either way ([`crate::detached`]): the
/// request only waits for it, so a client that hangs up or a request timeout cancels nothing.
pub async fn start_run(
    state: &AppState,
    actor: &str,
    period: BillingPeriod,
    dry_run: bool,
    wait: bool,
) -> Result<RunStarted, StartError> {
    let within = wait.then_some(state.settings.billing.run_wait);
    start_run_within(state, actor, period, dry_run, within).await
}

async fn start_run_within(
    state: &AppState,
    actor: &str,
    period: BillingPeriod,
    dry_run: bool,
    wait: Option<Duration>,
) -> Result<RunStarted, StartError> {
    let run_id = run_log::new_run_id();
    let opts = RunOptions::new(state, dry_run);
    let (state, actor) = (state.clone(), actor.to_owned());
    let accepted = RunAccepted {
        run_id: run_id.clone(),
        status: "running",
    };
    // Everything from the audit on is detached: dropped after the lease was taken or the run recorded,
    // the request would leave a lease held or a run that never ends.
    let Some(wait) = wait else {
        // At once: the run is recorded before the answer, so its id can be read straight away.
        state
            .detached
            .finish({
                let state = state.clone();
                async move {
                    audit_start(&state, &actor, period, dry_run, &run_id).await?;
                    run_log::insert(&state.db, &run_id, period, dry_run, &actor).await?;
                    state.detached.clone().spawn(async move {
                        if let Err(e) = run_log::complete(&state, &run_id, period, opts).await {
                            tracing::warn!(%run_id, error = %e, "run failed");
                        }
                    });
                    Ok::<_, StartError>(())
                }
            })
            .await?;
        return Ok(RunStarted::Accepted(accepted));
    };
    let run = state.detached.clone().spawn(async move {
        audit_start(&state, &actor, period, dry_run, &run_id).await?;
        let report = run_log::execute(&state, &run_id, period, opts, &actor).await;
        if let Err(RunError::Db(e)) = &report {
            tracing::warn!(%run_id, error = %e, "run failed");
        }
        Ok::<_, StartError>(report?)
    });
    match tokio::time::timeout(wait, run).await {
        Ok(Ok(report)) => Ok(RunStarted::Finished(report?)),
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        // Still running: its id now, its report on its page when it ends.
        Err(_) => Ok(RunStarted::Accepted(accepted)),
    }
}

async fn audit_start(
    state: &AppState,
    actor: &str,
    period: BillingPeriod,
    dry_run: bool,
    run_id: &str,
) -> Result<(), sqlx::Error> {
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
    .await
}

impl From<RunError> for StartError {
    fn from(e: RunError) -> StartError {
        match e {
            RunError::InProgress(_) => {
                StartError::InProgress(format!("{}.", capitalize(&e.to_string())))
            }
            RunError::Db(e) => StartError::Db(e),
        }
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
) -> Result<Once, StartError> {
    let (state, actor, run_id) = (state.clone(), actor.to_owned(), run_id.to_owned());
    // Detached from the insert on: a run recorded must be started, whatever becomes of the request.
    state
        .detached
        .clone()
        .finish(async move {
            match run_log::insert(&state.db, &run_id, period, dry_run, &actor).await {
                Ok(()) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Ok(Once::AlreadyStarted)
                }
                Err(e) => return Err(e.into()),
            }
            audit_start(&state, &actor, period, dry_run, &run_id).await?;
            let opts = RunOptions::new(&state, dry_run);
            state.detached.clone().spawn(async move {
                if let Err(e) = run_log::complete(&state, &run_id, period, opts).await {
                    tracing::warn!(%run_id, error = %e, "run failed");
                }
            });
            Ok(Once::Started)
        })
        .await
}

/// What a live run of `period` would bill now: a dry run, not recorded in the history (it is the
/// question a person asks before confirming, not a run).
pub async fn preview(state: &AppState, period: BillingPeriod) -> Result<RunReport, StartError> {
    super::run_period(state, period, RunOptions::new(state, true))
        .await
        .map_err(StartError::from)
}
