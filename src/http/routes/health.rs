//! Liveness and readiness probes.

use crate::http::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
struct Ready {
    #[schema(example = "ready")]
    status: &'static str,
    #[schema(example = "ok")]
    database: &'static str,
}

/// Liveness: the process is up and serving.
///
/// Anyone.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up.", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers, so the service can do its work.
///
/// Anyone.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 503, description = "The database is not reachable (`service_unavailable`).", body = ApiError),
    ))]
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Ready>> {
    state
        .db
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("The database is not reachable.", e))?;
    Ok(Json(Ready {
        status: "ready",
        database: "ok",
    }))
}
