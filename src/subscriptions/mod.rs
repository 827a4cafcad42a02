//! The subscription side: each tenant's one Stripe customer, our copy of subscriptions and invoices, and
//! the webhooks that keep that copy true.

pub mod access;
pub mod cancellation;
pub mod checkout;
pub mod customer;
pub mod demo;
pub mod duplicates;
pub mod payment_method;
pub mod plan;
pub mod portal;
pub mod sync;
pub mod webhook;

use crate::db::tenants;
use crate::domain::TenantId;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

pub async fn tenant_or_404(state: &AppState, id: &TenantId) -> ApiResult<tenants::Tenant> {
    tenants::get(&state.db, id).await?.ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::TenantNotFound,
            format!("No tenant has the id {:?}.", id.as_str()),
        )
    })
}

/// An absolute http(s) URL, or a 422 that names the field.
pub(crate) fn check_url(field: &str, url: &str) -> ApiResult<()> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            ErrorCode::InvalidUrl,
            format!("{field}: give an absolute http(s) URL of at most 2,048 characters."),
        ))
    }
}
