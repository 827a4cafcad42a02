//! Super-admin reports: `GET /api/admin/reports/usage` and `/revenue`, `?month=YYYY-MM` (default: the
//! current month in the billing time zone).

use crate::auth::SuperAdmin;
use crate::domain::{time, BillingPeriod};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::usage::report::{self, RevenueRow, UsageRow};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/reports/usage", get(usage))
        .route("/api/admin/reports/revenue", get(revenue))
}

#[derive(Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

#[derive(Serialize)]
struct Report<T> {
    month: BillingPeriod,
    organizations: Vec<T>,
}

fn month(state: &AppState, q: MonthQuery) -> ApiResult<BillingPeriod> {
    match q.month {
        None => Ok(BillingPeriod::containing(
            time::now(),
            state.settings.billing_timezone,
        )),
        Some(m) => m
            .parse()
            .map_err(|e: String| ApiError::unprocessable("invalid_month", format!("month: {e}."))),
    }
}

async fn usage(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    Query(q): Query<MonthQuery>,
) -> ApiResult<Json<Report<UsageRow>>> {
    let month = month(&state, q)?;
    Ok(Json(Report {
        month,
        organizations: report::usage_by_organization(&state.db, month).await?,
    }))
}

async fn revenue(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    Query(q): Query<MonthQuery>,
) -> ApiResult<Json<Report<RevenueRow>>> {
    let month = month(&state, q)?;
    let tz = state.settings.billing_timezone;
    Ok(Json(Report {
        month,
        organizations: report::revenue_by_organization(&state.db, month, tz).await?,
    }))
}
