//! `GET /metrics`: Prometheus text format.

use crate::billing::health;
use crate::domain::time;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a scrape waits for the billing health; past it the gauges are left out and the rest served.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics: requests, usage events, webhooks, Stripe calls, billing runs.
///
/// Anyone. What each metric means is in docs/OPERATIONS.md.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The Prometheus text exposition format, version 0.0.4.", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let tz = state.settings.billing.timezone;
    let checked = tokio::time::timeout(HEALTH_TIMEOUT, health::check(&state.db, tz, time::now()));
    let mut gauges: Vec<crate::metrics::Gauge> = match checked.await {
        Ok(Ok(h)) => {
            crate::metrics::billing_health(h.orphan_claims.len(), h.unfinished_periods.len())
                .to_vec()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "billing health not read for /metrics");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("billing health not read for /metrics in time");
            Vec::new()
        }
    };
    match tokio::time::timeout(HEALTH_TIMEOUT, crate::platform::status::gauges(&state.db)).await {
        Ok(Ok(g)) => gauges.extend(g),
        Ok(Err(e)) => tracing::warn!(error = %e, "platform follower gauges not read for /metrics"),
        Err(_) => tracing::warn!("platform follower gauges not read for /metrics in time"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render_with(&gauges),
    )
}
