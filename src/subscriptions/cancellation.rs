//! Cancel at period end, and reactivate before it.

use super::sync;
use super::{SubscriptionError, SubscriptionResult};
use crate::auth::Caller;
use crate::db::{audit, subscriptions};
use crate::domain::time::now;
use crate::domain::TenantId;
use crate::state::AppState;

/// Sets `cancel_at_period_end` on the tenant's subscription and stores Stripe's answer, detached from
/// the caller ([`crate::detached`]): Stripe's answer is stored even if the request that asked is dropped.
async fn set_cancel_at_period_end(
    state: &AppState,
    sub: &subscriptions::SubscriptionRow,
    cancel: bool,
) -> SubscriptionResult<subscriptions::SubscriptionRow> {
    let (s, sub) = (state.clone(), sub.clone());
    state
        .detached
        .finish(async move { write_cancel_at_period_end(&s, &sub, cancel).await })
        .await
}

async fn write_cancel_at_period_end(
    state: &AppState,
    sub: &subscriptions::SubscriptionRow,
    cancel: bool,
) -> SubscriptionResult<subscriptions::SubscriptionRow> {
    // Keyed by the state it changes from, so cancel → reactivate → cancel are three distinct writes.
    let key = format!(
        "subscription:{}:cancel_at_period_end={cancel}:from={}",
        sub.stripe_subscription_id,
        sub.stripe_updated_at.timestamp_micros()
    );
    // Written and stored as one step for this object, read time taken before the write: a webhook
    // handler's older reading cannot land in between.
    let _one_at_a_time = sync::one_at_a_time(state, &sub.stripe_subscription_id).await;
    let read_at = now();
    let updated = state
        .stripe
        .set_cancel_at_period_end(&sub.stripe_subscription_id, cancel, &key)
        .await?;
    sync::subscription(state, &updated, read_at)
        .await?
        .ok_or_else(|| anyhow::anyhow!("updated subscription has no tenant").into())
}

/// Sets the tenant's live subscription to cancel at the end of its period (idempotent), audited.
pub async fn cancel_subscription(
    state: &AppState,
    caller: &Caller,
    tenant_id: &TenantId,
) -> SubscriptionResult<subscriptions::SubscriptionRow> {
    let sub = subscriptions::live_for_tenant(&state.db, tenant_id.as_str())
        .await?
        .ok_or(SubscriptionError::NoActiveSubscription)?;
    let sub = if sub.cancel_at_period_end {
        sub
    } else {
        set_cancel_at_period_end(state, &sub, true).await?
    };
    audit::record(
        &state.db,
        &caller.actor(),
        "subscription.cancel",
        Some(tenant_id.as_str()),
        &sub.stripe_subscription_id,
    )
    .await?;
    Ok(sub)
}

/// Undoes a pending cancellation of the tenant's subscription, audited.
pub async fn reactivate_subscription(
    state: &AppState,
    caller: &Caller,
    tenant_id: &TenantId,
) -> SubscriptionResult<subscriptions::SubscriptionRow> {
    let sub = subscriptions::live_for_tenant(&state.db, tenant_id.as_str())
        .await?
        .filter(|s| s.cancel_at_period_end)
        .ok_or(SubscriptionError::NoPendingCancellation)?;
    let sub = set_cancel_at_period_end(state, &sub, false).await?;
    audit::record(
        &state.db,
        &caller.actor(),
        "subscription.reactivate",
        Some(tenant_id.as_str()),
        &sub.stripe_subscription_id,
    )
    .await?;
    Ok(sub)
}
