//! HTTP routes, one module per area, each with its own `router()`.

pub mod billing;
pub mod dashboard;
mod health;
mod metrics;
mod overview;
mod reports;
pub mod runs;
mod tenants;
mod usage;
mod webhook;

use crate::state::AppState;
use axum::Router;

/// Every route the service answers.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(tenants::router())
        .merge(billing::router())
        .merge(webhook::router())
        .merge(usage::router())
        .merge(dashboard::router())
        .merge(runs::router())
        .merge(reports::router())
        .merge(overview::router())
}
