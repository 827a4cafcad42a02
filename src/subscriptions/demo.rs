//! Demo accounts: exempt from billing, in our runs and in Stripe's collection.

use super::{sync, tenant_or_404};
use super::{SubscriptionError, SubscriptionResult};
use crate::auth::Caller;
use crate::db::{audit, subscriptions, tenants};
use crate::domain::time::now;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::stripe;
use chrono::{DateTime, Utc};

/// Sets a tenant's demo status, audited; returns the tenant and a sentence saying what changed.
///
/// Detached from the caller ([`crate::detached`]): once Stripe's collection is paused or resumed, the
/// tenant's flag follows even if the request that asked is dropped.
pub async fn set_demo(
    state: &AppState,
    caller: &Caller,
    tenant_id: &str,
    is_demo: bool,
) -> SubscriptionResult<(tenants::Tenant, String)> {
    set_demo_as_of(state, caller, tenant_id, is_demo, now()).await
}

/// [`set_demo`] for a switch made elsewhere at `as_of` (the platform's, seen late): the demo interval
/// starts or ends then, so usage since is free or billed as the switch says (`db::tenants::set_demo_as_of`
/// says what a period already billed keeps). Stripe's collection can only change now.
pub async fn set_demo_as_of(
    state: &AppState,
    caller: &Caller,
    tenant_id: &str,
    is_demo: bool,
    as_of: DateTime<Utc>,
) -> SubscriptionResult<(tenants::Tenant, String)> {
    let (s, caller, tenant_id) = (state.clone(), caller.clone(), tenant_id.to_owned());
    state
        .detached
        .finish(async move { switch_demo(&s, &caller, &tenant_id, is_demo, as_of).await })
        .await
}

async fn switch_demo(
    state: &AppState,
    caller: &Caller,
    tenant_id: &str,
    is_demo: bool,
    as_of: DateTime<Utc>,
) -> SubscriptionResult<(tenants::Tenant, String)> {
    let id = TenantId::parse(tenant_id)
        .map_err(|_| SubscriptionError::TenantNotFound(tenant_id.to_owned()))?;
    tenant_or_404(state, &id).await?;
    // Stripe first: a demo tenant must not be charged there either. Should this fail, nothing has
    // changed yet and the same request can be repeated.
    let collection = set_collection(state, &id, is_demo).await?;
    let tenant = tenants::set_demo_as_of(&state.db, &id, is_demo, as_of)
        .await?
        .ok_or_else(|| SubscriptionError::TenantNotFound(tenant_id.to_owned()))?;
    audit::record(
        &state.db,
        &caller.actor(),
        if is_demo {
            "tenant.demo_on"
        } else {
            "tenant.demo_off"
        },
        Some(id.as_str()),
        &tenant.name,
    )
    .await?;
    tracing::info!(tenant_id = %id, is_demo, "demo status set");
    let mut message = if is_demo {
        format!(
            "{} is now a demo account: exempt from billing charges.",
            tenant.name
        )
    } else {
        format!(
            "{} is no longer a demo account: it will be billed normally.",
            tenant.name
        )
    };
    if let Some(sub) = collection {
        message.push_str(&if is_demo {
            format!(" Stripe no longer collects its subscription {sub}: renewal invoices are voided until demo is switched off.")
        } else {
            format!(" Stripe collects its subscription {sub} again from the next renewal.")
        });
    }
    Ok((tenant, message))
}

/// Pauses (demo) or resumes collection on the tenant's live subscription, if it has one; returns its id.
async fn set_collection(
    state: &AppState,
    tenant: &TenantId,
    is_demo: bool,
) -> SubscriptionResult<Option<String>> {
    let Some(sub) = subscriptions::live_for_tenant(&state.db, tenant.as_str()).await? else {
        return Ok(None);
    };
    let current = state
        .stripe
        .subscription(&sub.stripe_subscription_id)
        .await?;
    if current.collection_paused() == is_demo {
        return Ok(Some(sub.stripe_subscription_id));
    }
    let (pause, verb) = if is_demo {
        (stripe::Pause::VoidInvoices, "pause")
    } else {
        (stripe::Pause::Collect, "resume")
    };
    // Keyed by the state it changes from, so demo on, off and on again are three distinct writes.
    let key = format!(
        "subscription:{}:collection:{verb}:from={}",
        sub.stripe_subscription_id,
        sub.stripe_updated_at.timestamp_micros()
    );
    let _one_at_a_time = sync::one_at_a_time(state, &sub.stripe_subscription_id).await;
    let read_at = now();
    let updated = state
        .stripe
        .set_collection(&sub.stripe_subscription_id, pause, &key)
        .await?;
    sync::subscription(state, &updated, read_at).await?;
    tracing::info!(tenant_id = %tenant, subscription = %sub.stripe_subscription_id, is_demo, "collection {verb}d");
    Ok(Some(sub.stripe_subscription_id))
}
