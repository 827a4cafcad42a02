//! `POST/GET /api/admin/billing/runs`: start the monthly run for a period and read its report.

use crate::billing::run_log::{self, RunRecord};
use crate::billing::run_report::RunReport;
use crate::domain::time::rfc3339;
use crate::http::auth::SuperAdmin;
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::billing::start::{closed_period, start_run, RunAccepted, RunStarted};

impl IntoResponse for RunStarted {
    fn into_response(self) -> Response {
        match self {
            RunStarted::Finished(report) => (StatusCode::OK, Json(report)).into_response(),
            RunStarted::Accepted(accepted) => {
                (StatusCode::ACCEPTED, Json(accepted)).into_response()
            }
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, start))
        .routes(routes!(show))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartRun {
    /// The period to bill, YYYY-MM: a month that has ended, in the billing time zone.
    #[schema(
        pattern = r"^(2[0-9]{3}|[3-9][0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2026-09"
    )]
    period: String,
    /// Show what would be billed; write nothing to Stripe.
    #[serde(default)]
    dry_run: bool,
    /// Answer with the report when the run ends (default), or at once with the run's id.
    #[serde(default = "yes")]
    #[schema(default = true)]
    wait: bool,
}

/// A run from the history.
#[derive(Serialize, ToSchema)]
pub struct RunView {
    run_id: String,
    #[schema(example = "2026-09")]
    period: String,
    dry_run: bool,
    /// `running`, `completed` (also when some tenants failed: see the report) or `failed`.
    #[schema(example = "completed")]
    status: String,
    /// Who started it: `scheduler`, or the role and user that did.
    trigger: String,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    /// The report when completed, `{error}` when failed, null while running.
    #[schema(value_type = Option<RunOutcome>)]
    report: Option<Value>,
}

/// What a finished run recorded (documentation of `RunView::report`, stored as JSON).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RunOutcome {
    Completed(RunReport),
    Failed {
        /// Why the run stopped.
        error: String,
    },
}

impl From<&RunRecord> for RunView {
    fn from(r: &RunRecord) -> RunView {
        RunView {
            run_id: r.run_id.clone(),
            period: r.period.clone(),
            dry_run: r.dry_run,
            status: r.status.clone(),
            trigger: r.trigger.clone(),
            started_at: rfc3339(r.started_at),
            finished_at: r.finished_at.map(rfc3339),
            report: r.report.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct RunList {
    runs: Vec<RunView>,
}

fn yes() -> bool {
    true
}

/// Run the monthly billing for a period that has ended (safe to repeat: nothing is billed twice).
///
/// Roles: super_admin.
#[utoipa::path(post, path = "/api/admin/billing/runs", tag = "admin",
    security(("bearer" = [])),
    request_body = StartRun,
    responses(
        (status = 200, description = "The run finished (`wait`: true): its report, as `bill --json` prints it. In a dry run `stripe_invoice_id` is null.", body = RunReport),
        (status = 202, description = "The run goes on in the background: at once with `wait`: false, after 50 s with `wait`: true if it has not ended by then. Its page (`GET /api/admin/billing/runs/{run_id}`) shows it until it ends; no client hanging up or request timeout stops it.", body = RunAccepted),
        (status = 409, description = "A run for the period is in progress (`run_in_progress`).", body = ApiError),
        (status = 422, description = "The period is not YYYY-MM or has not ended (`invalid_period`, `period_not_closed`, `invalid_json`).", body = ApiError),
    ))]
async fn start(
    State(state): State<AppState>,
    SuperAdmin(caller): SuperAdmin,
    ApiJson(body): ApiJson<StartRun>,
) -> ApiResult<RunStarted> {
    let period = closed_period(&state, &body.period)?;
    Ok(start_run(&state, &caller.actor(), period, body.dry_run, body.wait).await?)
}

/// One run and its report.
///
/// Roles: super_admin.
#[utoipa::path(get, path = "/api/admin/billing/runs/{run_id}", tag = "admin",
    security(("bearer" = [])),
    params(("run_id" = String, Path, description = "The run's id, as the start answered it.")),
    responses(
        (status = 200, description = "The run.", body = RunView),
        (status = 404, description = "No such run (`run_not_found`).", body = ApiError),
    ))]
async fn show(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<Json<RunView>> {
    let not_found = || {
        ApiError::not_found(
            ErrorCode::RunNotFound,
            format!("No run has the id {run_id:?}."),
        )
    };
    // Ids are `run_` and hex: anything else cannot exist, and PostgreSQL rejects NUL in a parameter.
    if run_id.len() > 64 || !run_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(not_found());
    }
    let run = run_log::get(&state.db, &run_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(RunView::from(&run)))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

/// The most recent runs, newest first.
///
/// Roles: super_admin.
#[utoipa::path(get, path = "/api/admin/billing/runs", tag = "admin",
    security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "How many (default 50; clamped to 1 to 500).")),
    responses(
        (status = 200, description = "The runs.", body = RunList),
        (status = 422, description = "`limit` is not a whole number (`invalid_query`).", body = ApiError),
    ))]
async fn list(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<RunList>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = run_log::recent(&state.db, limit).await?;
    Ok(Json(RunList {
        runs: rows.iter().map(RunView::from).collect(),
    }))
}
