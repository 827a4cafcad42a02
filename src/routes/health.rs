//! Liveness and readiness probes.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers: the service can do its work.
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .db
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("The database is not reachable.", e))?;
    Ok(Json(json!({"status": "ready", "database": "ok"})))
}
