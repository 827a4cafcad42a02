//! HTTP routes, one module per area, each with its own `router()`.

mod billing;
mod health;
mod tenants;
mod webhook;

use crate::state::AppState;
use axum::Router;

/// Every route the service answers.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(tenants::router())
        .merge(billing::router())
        .merge(webhook::router())
}
