//! HTTP routes, one module per area, each with its own `router()`.

mod dashboard;
mod health;
mod reports;
mod tenants;
mod usage;

use crate::state::AppState;
use axum::Router;

/// Every route the service answers.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(tenants::router())
        .merge(usage::router())
        .merge(dashboard::router())
        .merge(reports::router())
}
