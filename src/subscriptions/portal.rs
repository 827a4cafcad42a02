//! Stripe's customer portal: cards, invoices, cancellation.

use super::{check_url, tenant_or_404};
use super::{SubscriptionError, SubscriptionResult};
use crate::domain::time::now;
use crate::domain::TenantId;
use crate::state::AppState;
use sha2::{Digest, Sha256};

/// Opens a customer-portal session for the tenant and returns its URL.
pub async fn portal_session(
    state: &AppState,
    tenant_id: &TenantId,
    return_url: &str,
) -> SubscriptionResult<String> {
    check_url("return_url", return_url)?;
    let tenant = tenant_or_404(state, tenant_id).await?;
    let customer_id = crate::db::customers::customer_of(&state.db, &tenant.id)
        .await?
        .ok_or(SubscriptionError::NoStripeCustomer)?;
    let configuration = state.settings.stripe.portal_configuration_id.as_deref();
    // A portal session is a short-lived login link; one per minute and return URL is plenty.
    let digest = hex::encode(
        &Sha256::digest(format!("{customer_id}|{return_url}|{configuration:?}").as_bytes())[..8],
    );
    let key = format!("portal:{}:{digest}:{}", tenant.id, now().timestamp() / 60);
    let session = state
        .stripe
        .open_portal(&customer_id, return_url, configuration, &key)
        .await?;
    Ok(session.url)
}
