//! HTTP routes, one module per area, each with its own `router()`.

mod health;
mod tenants;

use crate::state::AppState;
use axum::Router;

/// Every route the service answers.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(tenants::router())
}
