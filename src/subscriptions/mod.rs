//! The subscription side: each tenant's one Stripe customer, our copy of subscriptions and invoices, and
//! the webhooks that keep that copy true.

pub mod access;
pub mod cancellation;
pub mod checkout;
pub mod customer;
pub mod demo;
pub mod duplicates;
pub mod error;
pub mod payment_method;
pub mod plan;
pub mod portal;
pub mod sync;
pub mod webhook;

use crate::db::tenants;
use crate::domain::TenantId;
use crate::state::AppState;
pub use error::{SubscriptionError, SubscriptionResult};

pub async fn tenant_or_404(state: &AppState, id: &TenantId) -> SubscriptionResult<tenants::Tenant> {
    tenants::get(&state.db, id)
        .await?
        .ok_or_else(|| SubscriptionError::TenantNotFound(id.as_str().to_owned()))
}

/// An absolute http(s) URL, or an error that names the field.
pub(crate) fn check_url(field: &'static str, url: &str) -> SubscriptionResult<()> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(SubscriptionError::InvalidUrl { field })
    }
}
