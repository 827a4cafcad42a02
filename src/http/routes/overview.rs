//! `GET /api/admin/billing/overview`: the super admin's revenue figures (definitions in docs/OVERVIEW.md).

use crate::http::auth::SuperAdmin;
use crate::http::error::ApiResult;
use crate::overview::{self, Overview};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show))
}

/// Revenue overview: MRR, subscription counts, usage revenue, failed payments, churn, one row per
/// organization and twelve months of history.
///
/// Roles: super_admin. The definitions are in docs/OVERVIEW.md.
#[utoipa::path(get, path = "/api/admin/billing/overview", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "The overview as of now.", body = Overview)))]
async fn show(State(state): State<AppState>, _admin: SuperAdmin) -> ApiResult<Json<Overview>> {
    Ok(Json(overview::now(&state).await?))
}
