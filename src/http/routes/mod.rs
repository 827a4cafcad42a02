//! HTTP routes, one module per area, each with its own `router()`.
//!
//! Every route is registered with `utoipa_axum::routes!`, which takes its path and method from the
//! handler's `#[utoipa::path]`: a route cannot be served without appearing in `/api/openapi.json`.

mod access;
pub mod billing;
pub mod dashboard;
mod health;
mod metrics;
pub mod openapi;
mod organizations;
mod overview;
mod reports;
pub mod runs;
mod tenants;
mod usage;
mod webhook;

use crate::state::AppState;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;

/// Every route the service answers, with its documentation.
pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::router())
        .merge(metrics::router())
        .merge(openapi::router())
        .merge(tenants::router())
        .merge(billing::router())
        .merge(access::router())
        .merge(webhook::router())
        .merge(usage::router())
        .merge(dashboard::router())
        .merge(runs::router())
        .merge(reports::router())
        .merge(overview::router())
        .merge(organizations::router())
}

/// Every route the service answers.
pub fn router() -> Router<AppState> {
    documented().split_for_parts().0
}
