//! Super-admin reports: `GET /api/admin/reports/usage` and `/revenue`, `?month=YYYY-MM` (default: the
//! current month in the billing time zone).

use crate::domain::{time, BillingPeriod};
use crate::http::auth::SuperAdmin;
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::extract::ApiQuery;
use crate::state::AppState;
use crate::usage::monthly_reports::{self, RevenueRow, UsageRow};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(revenue))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MonthQuery {
    /// YYYY-MM, in the billing time zone; default: the current month.
    #[param(pattern = r"^(2[0-9]{3}|[3-9][0-9]{3})-(0[1-9]|1[0-2])$")]
    month: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct UsageReport {
    month: BillingPeriod,
    organizations: Vec<UsageRow>,
}

#[derive(Serialize, ToSchema)]
struct RevenueReport {
    month: BillingPeriod,
    organizations: Vec<RevenueRow>,
}

fn month(state: &AppState, q: MonthQuery) -> ApiResult<BillingPeriod> {
    match q.month {
        None => Ok(BillingPeriod::containing(
            time::now(),
            state.settings.billing.timezone,
        )),
        Some(m) => m.parse().map_err(|e: String| {
            ApiError::unprocessable(ErrorCode::InvalidMonth, format!("month: {e}."))
        }),
    }
}

/// Usage by organization for a month: words and calls recorded, billed or not.
///
/// Roles: super_admin.
#[utoipa::path(get, path = "/api/admin/reports/usage", tag = "admin",
    security(("bearer" = [])),
    params(MonthQuery),
    responses(
        (status = 200, description = "One row per organization.", body = UsageReport),
        (status = 422, description = "The month is not YYYY-MM (`invalid_month`, `invalid_query`).", body = ApiError),
    ))]
async fn usage(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    ApiQuery(q): ApiQuery<MonthQuery>,
) -> ApiResult<Json<UsageReport>> {
    let month = month(&state, q)?;
    Ok(Json(UsageReport {
        month,
        organizations: monthly_reports::usage_by_organization(&state.db, month).await?,
    }))
}

/// Revenue by organization for a month: the invoices paid in it.
///
/// Roles: super_admin.
#[utoipa::path(get, path = "/api/admin/reports/revenue", tag = "admin",
    security(("bearer" = [])),
    params(MonthQuery),
    responses(
        (status = 200, description = "One row per organization.", body = RevenueReport),
        (status = 422, description = "The month is not YYYY-MM (`invalid_month`, `invalid_query`).", body = ApiError),
    ))]
async fn revenue(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    ApiQuery(q): ApiQuery<MonthQuery>,
) -> ApiResult<Json<RevenueReport>> {
    let month = month(&state, q)?;
    let tz = state.settings.billing.timezone;
    Ok(Json(RevenueReport {
        month,
        organizations: monthly_reports::revenue_by_organization(&state.db, month, tz).await?,
    }))
}
