//! One live subscription per tenant. Checkout keeps at most one session open per tenant, but Stripe can
//! still end with two live subscriptions (a session completed before the other was expired, one made in
//! the dashboard): the newer is canceled at once, and the audit log (shown on the admin page) says so.

use super::error::SyncError;
use super::sync;
use crate::db::{audit, subscriptions};
use crate::state::AppState;

/// Cancels every live subscription of the tenant but the oldest; returns the ids canceled.
pub async fn cancel_newer(state: &AppState, tenant: &str) -> Result<Vec<String>, SyncError> {
    let live_now = || async {
        Ok::<_, sqlx::Error>(
            subscriptions::for_tenant(&state.db, tenant)
                .await?
                .into_iter()
                .filter(subscriptions::SubscriptionRow::is_live)
                .collect::<Vec<_>>(),
        )
    };
    // Nearly always one: look without the lock, which holds a pooled connection on PostgreSQL, so that
    // many webhooks at once do not each hold one while waiting for another.
    if live_now().await?.len() < 2 {
        return Ok(Vec::new());
    }
    let _lock =
        crate::db::locks::lock(&state.db, &state.locks, &format!("checkout:{tenant}")).await?;
    let mut live = live_now().await?;
    if live.len() < 2 {
        return Ok(Vec::new());
    }
    live.sort_by(|a, b| {
        (a.stripe_created_at, &a.stripe_subscription_id)
            .cmp(&(b.stripe_created_at, &b.stripe_subscription_id))
    });
    let kept = live.remove(0);
    let mut canceled = Vec::new();
    for dup in live {
        let id = dup.stripe_subscription_id;
        let one_at_a_time = sync::one_at_a_time(state, &id).await;
        let read_at = crate::domain::time::now();
        match state.stripe.cancel_subscription_now(&id).await {
            Ok(sub) => {
                sync::subscription(state, &sub, read_at).await?;
                drop(one_at_a_time);
            }
            // Already gone: read what Stripe has.
            Err(e) if e.is_missing() || e.status() == Some(400) => {
                drop(one_at_a_time);
                sync::refresh_subscription(state, &id, sync::PaymentMethodStep::Leave).await?;
            }
            Err(e) => return Err(e.into()),
        }
        audit::record(
            &state.db,
            "billing",
            "subscription.duplicate_canceled",
            Some(tenant),
            &format!(
                "{id} canceled at once: the organization already had {}; if its first invoice was paid, refund it in Stripe's dashboard",
                kept.stripe_subscription_id
            ),
        )
        .await?;
        tracing::warn!(tenant_id = %tenant, canceled = %id, kept = %kept.stripe_subscription_id, "duplicate subscription canceled");
        canceled.push(id);
    }
    Ok(canceled)
}
