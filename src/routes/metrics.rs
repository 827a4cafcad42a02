//! `GET /metrics`: Prometheus text format.

use crate::state::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics: requests, usage events, webhooks, Stripe calls, billing runs.
///
/// Anyone. What each metric means is in docs/OPERATIONS.md.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The Prometheus text exposition format, version 0.0.4.", body = String, content_type = "text/plain")))]
async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}
