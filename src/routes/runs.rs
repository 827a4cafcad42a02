//! `POST/GET /api/admin/billing/runs`: start the monthly run for a period and read its report.

use crate::auth::SuperAdmin;
use crate::billing::run::RunError;
use crate::billing::{runs, RunOptions};
use crate::db::audit;
use crate::domain::BillingPeriod;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/billing/runs", get(list).post(start))
        .route("/api/admin/billing/runs/{run_id}", get(show))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
    period: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// Parses the period and refuses periods that have not ended (their usage is still coming in).
pub fn closed_period(state: &AppState, raw: &str) -> ApiResult<BillingPeriod> {
    let period: BillingPeriod = raw.parse().map_err(|e| {
        ApiError::unprocessable(
            "invalid_period",
            format!("period: {e}; write it as YYYY-MM."),
        )
    })?;
    let current =
        BillingPeriod::containing(crate::domain::time::now(), state.settings.billing_timezone);
    if period >= current {
        return Err(ApiError::unprocessable(
            "period_not_closed",
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
) -> ApiResult<(StatusCode, Value)> {
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
        return Ok((
            StatusCode::ACCEPTED,
            json!({"run_id": run_id, "status": "running"}),
        ));
    }
    match runs::execute(state, &run_id, period, opts, actor).await {
        Ok(report) => Ok((
            StatusCode::OK,
            serde_json::to_value(report).expect("report serializes"),
        )),
        Err(e @ RunError::InProgress(_)) => Err(ApiError::conflict(
            "run_in_progress",
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

async fn start(
    State(state): State<AppState>,
    SuperAdmin(caller): SuperAdmin,
    ApiJson(body): ApiJson<StartRun>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let period = closed_period(&state, &body.period)?;
    let (status, body) =
        start_run(&state, &caller.actor(), period, body.dry_run, body.wait).await?;
    Ok((status, Json(body)))
}

async fn show(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = runs::get(&state.db, &run_id).await?.ok_or_else(|| {
        ApiError::not_found("run_not_found", format!("No run has the id {run_id:?}."))
    })?;
    Ok(Json(run.to_json()))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = runs::recent(&state.db, limit).await?;
    Ok(Json(
        json!({"runs": rows.iter().map(|r| r.to_json()).collect::<Vec<_>>()}),
    ))
}
