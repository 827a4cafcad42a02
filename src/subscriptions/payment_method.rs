//! The one payment method every charge of a tenant uses.
//!
//! Stripe charges a subscription's invoice, and retries it, with the subscription's own default payment
//! method before the customer's invoice default; our usage invoice belongs to no subscription, so only the
//! customer's default pays it. Checkout saves the payment method on the subscription; the customer portal
//! may write the customer's default only, the subscription's only, or both. Left alone, the $299 retries
//! and the usage invoice can charge different cards, and a card changed in the portal can miss the
//! retries.
//!
//! So the tenant's payment method is whichever the tenant set last, ordered by Stripe's clock (the
//! `created` of the event that reported the change), and we copy it onto the customer and every live
//! subscription. Those copying writes carry keys starting `FOLLOW_KEY_PREFIX`, which the events they
//! cause carry back (`request.idempotency_key`): they are not the tenant's changes. When the payment
//! method changes, the tenant's open invoices are paid with it at once (`billing::collect`).

use super::sync::SyncError;
use crate::db::{customers, payment_methods, tenants};
use crate::domain::TenantId;
use crate::state::AppState;
use crate::stripe::{StripeClient, StripeError, Subscription, FOLLOW_KEY_PREFIX};

/// The tenant set `payment_method` at `at` (Stripe's clock): recorded unless a later change is, then
/// copied onto the customer and the subscriptions, and the open invoices collected.
pub async fn changed(
    state: &AppState,
    tenant: &str,
    payment_method: &str,
    at: i64,
) -> Result<(), SyncError> {
    let pm = match state.stripe.payment_method(payment_method).await {
        Ok(pm) => pm,
        // Detached or deleted since: nothing to charge with, nothing to record.
        Err(e) if e.is_missing() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if payment_methods::record_change(&state.db, tenant, &pm.id, &pm.view(), at).await? {
        tracing::info!(tenant_id = tenant, payment_method = %pm.id, at, "the tenant's payment method changed");
    }
    settle(state, tenant).await
}

/// Records the payment method a subscription is paid with (the customer's default, else the
/// subscription's) when the tenant has none on record yet, as the oldest possible choice, and copies it
/// where it is missing. Nothing is collected: this is a reading, not a change.
pub async fn fill_if_missing(
    state: &AppState,
    tenant: &str,
    sub: &Subscription,
) -> Result<(), SyncError> {
    match payment_methods::choice(&state.db, tenant).await? {
        None => {
            let Some(pm) = sub.paying_method() else {
                return Ok(());
            };
            payment_methods::fill(&state.db, tenant, &pm.id, &pm.view()).await?;
        }
        // Already where it belongs on what this reading shows: nothing to write.
        Some(c) if !c.collect_due && in_place(sub, &c.stripe_payment_method_id) => return Ok(()),
        Some(_) => {}
    }
    settle(state, tenant).await
}

/// Whether the subscription, and its customer as read with it, already have `payment_method`.
fn in_place(sub: &Subscription, payment_method: &str) -> bool {
    let customer = sub
        .customer
        .object()
        .and_then(|c| c.invoice_payment_method_id());
    sub.payment_method_id() == Some(payment_method) && customer == Some(payment_method)
}

/// Brings Stripe in line with the tenant's payment method: the customer's invoice default and every
/// live subscription's default; then, if a change left them due, pays the open invoices.
pub async fn settle(state: &AppState, tenant: &str) -> Result<(), SyncError> {
    let Some(choice) = payment_methods::choice(&state.db, tenant).await? else {
        return Ok(());
    };
    let Some(customer) = customers::customer_of(&state.db, tenant).await? else {
        return Ok(());
    };
    let key_base = format!(
        "{FOLLOW_KEY_PREFIX}{tenant}:{}:{}",
        choice.stripe_payment_method_id, choice.changed_at
    );
    follow(
        &state.stripe,
        &customer,
        &choice.stripe_payment_method_id,
        &key_base,
    )
    .await?;
    if choice.collect_due {
        let demo = match TenantId::parse(tenant) {
            Ok(t) => tenants::get(&state.db, &t)
                .await?
                .is_some_and(|t| t.is_demo),
            Err(_) => false,
        };
        // A demo account is not collected (API.md); its invoices wait until it is not one.
        if !demo {
            crate::billing::collect::after_change(state, tenant, &customer, &choice).await?;
        }
        payment_methods::collected(&state.db, tenant, &choice).await?;
    }
    Ok(())
}

/// Writes `payment_method` as the customer's invoice default and as the default of each of its live
/// subscriptions, where it is not already. Each write's key is `{key_base}:{object}:{reading}`: the
/// decision, and the reading it corrects (when we read the object, in milliseconds), so the client's
/// retries of a write are recognized as that write, while the same correction needed again later (the
/// default cleared meanwhile, even within the same second) is a write of its own rather than a replay
/// of the first. Setting a field to a value is idempotent in itself, so a write made again after a
/// crash changes nothing more. The prefix marks the events these writes cause as ours.
pub async fn follow(
    stripe: &StripeClient,
    customer: &str,
    payment_method: &str,
    key_base: &str,
) -> Result<(), StripeError> {
    let reading = || crate::domain::time::now().timestamp_millis();
    let read_at = reading();
    let current = stripe.customer(customer).await?;
    if current.invoice_payment_method_id() != Some(payment_method) {
        let key = format!("{key_base}:{customer}:{read_at}");
        stripe
            .set_invoice_payment_method(customer, payment_method, &key)
            .await?;
    }
    let read_at = reading();
    for sub in stripe.subscriptions_of(customer).await? {
        let live = sub.ended_at.is_none()
            && !matches!(sub.status.as_str(), "canceled" | "incomplete_expired");
        if live && sub.payment_method_id() != Some(payment_method) {
            let key = format!("{key_base}:{}:{read_at}", sub.id);
            stripe
                .set_subscription_payment_method(&sub.id, payment_method, &key)
                .await?;
        }
    }
    Ok(())
}
