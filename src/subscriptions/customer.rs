//! Exactly one Stripe customer per tenant, even when several requests (or replicas) ask at once.

use super::error::SyncError;
use crate::db::customers;
use crate::db::tenants::Tenant;
use crate::state::AppState;
use crate::stripe;
use std::time::Duration;

/// The tenant's Stripe customer, created on first need.
///
/// Concurrent callers converge on one customer: the create carries the idempotency key
/// `customer-for-tenant:{id}`, so Stripe answers every caller with the same customer, and the link is
/// recorded with `ON CONFLICT DO NOTHING`. Should a link ever be lost after Stripe's 24-hour idempotency
/// window, the search by `metadata['tenant_id']` finds the existing customer before a new one is made.
pub async fn get_or_create(
    state: &AppState,
    tenant: &Tenant,
    email: Option<&str>,
) -> Result<String, SyncError> {
    let mut attempt = 0;
    loop {
        if let Some(id) = customers::customer_of(&state.db, &tenant.id).await? {
            return Ok(id);
        }
        if let Some(found) = search_by_tenant(state, &tenant.id).await {
            return Ok(customers::link(&state.db, &tenant.id, &found, email).await?);
        }
        match state
            .stripe
            .create_tenant_customer(
                &tenant.id,
                &tenant.name,
                &tenant.subdomain,
                email,
                &format!("customer-for-tenant:{}", tenant.id),
            )
            .await
        {
            Ok(customer) => {
                return Ok(customers::link(&state.db, &tenant.id, &customer.id, email).await?);
            }
            // Another request holds the same key in flight: wait for it, then read what it made.
            Err(e) if e.status() == Some(409) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn search_by_tenant(state: &AppState, tenant_id: &str) -> Option<String> {
    match state
        .stripe
        .search_customers_of_tenant::<stripe::Customer>(tenant_id)
        .await
    {
        Ok(found) => found
            .into_iter()
            .find(|c| {
                !c.deleted && c.metadata.get("tenant_id").map(String::as_str) == Some(tenant_id)
            })
            .map(|c| c.id),
        Err(e) => {
            // Search is a safety net, not a requirement (it lags and is not everywhere).
            tracing::debug!(error = %e, "customer search unavailable");
            None
        }
    }
}
