//! `GET /api/admin/billing/overview`: the super admin's revenue figures (definitions in docs/OVERVIEW.md).

use crate::auth::SuperAdmin;
use crate::error::ApiResult;
use crate::overview::{self, Overview};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/admin/billing/overview", get(show))
}

async fn show(State(state): State<AppState>, _admin: SuperAdmin) -> ApiResult<Json<Overview>> {
    Ok(Json(overview::now(&state).await?))
}
