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
//! `created` of the event that reported the change), and after a change we copy it onto the customer
//! and every live subscription. Only a change event, which proves the choice newer than what Stripe
//! has, replaces a payment method there; a mere reading (a subscription refreshed, the monthly run)
//! only fills the places where Stripe has none, since what Stripe has may be a newer change whose event
//! has not been applied yet. The copying writes carry keys starting `FOLLOW_KEY_PREFIX`, which the
//! events they cause carry back (`request.idempotency_key`): they are not the tenant's changes. When
//! the payment method changes, the tenant's open invoices are paid with it at once (`billing::collect`).

use super::error::SyncError;
use crate::db::{customers, payment_methods};
use crate::state::AppState;
use crate::stripe::{StripeClient, StripeError, Subscription, FOLLOW_KEY_PREFIX};

/// The tenant set `payment_method` at `at` (Stripe's clock): recorded unless a later change is. The
/// caller then settles the change (`billing::collect::settle`): copied onto the customer and the
/// subscriptions, and the open invoices collected.
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
        tracing::info!(tenant_id = tenant, payment_method = %pm.id, at, "the tenant's payment method recorded as changed");
    }
    Ok(())
}

/// Records the payment method a subscription is paid with (the customer's default, else the
/// subscription's) when the tenant has none on record yet, as the oldest possible choice, and copies
/// the tenant's payment method where Stripe has none (the customer's invoice default, a live
/// subscription's default). Nothing is collected and nothing Stripe has is replaced: this is a
/// reading, not a change, and a value that differs from our record may be newer than it (a change
/// whose event has not been applied yet, or never comes). Only a change event replaces ([`changed`]).
/// A change recorded and not collected yet (a crash, a Stripe error) is left to its settling
/// (`billing::collect::settle`), which copies it over whatever Stripe has.
pub async fn fill_if_missing(
    state: &AppState,
    tenant: &str,
    sub: &Subscription,
) -> Result<(), SyncError> {
    let choice = match payment_methods::choice(&state.db, tenant).await? {
        Some(c) if c.collect_due => return Ok(()),
        Some(c) => c,
        None => {
            let Some(pm) = sub.paying_method() else {
                return Ok(());
            };
            payment_methods::fill(&state.db, tenant, &pm.id, &pm.view()).await?;
            match payment_methods::choice(&state.db, tenant).await? {
                Some(c) => c,
                None => return Ok(()),
            }
        }
    };
    if has_gaps(sub) {
        copy(state, tenant, &choice, Writes::IntoGaps).await?;
    }
    Ok(())
}

/// Whether the subscription, or its customer as read with it, has no payment method of its own (an
/// unexpanded customer is not known to have one).
fn has_gaps(sub: &Subscription) -> bool {
    let customer_has = sub
        .customer
        .object()
        .is_some_and(|c| c.invoice_payment_method_id().is_some());
    sub.payment_method_id().is_none() || !customer_has
}

/// Copies `choice` onto the tenant's customer and its live subscriptions where `writes` says, under
/// keys naming the decision it carries out. Returns the customer (None: the tenant has none).
async fn copy(
    state: &AppState,
    tenant: &str,
    choice: &payment_methods::Choice,
    writes: Writes,
) -> Result<Option<String>, SyncError> {
    let Some(customer) = customers::customer_of(&state.db, tenant).await? else {
        return Ok(None);
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
        writes,
    )
    .await?;
    Ok(Some(customer))
}

/// Brings Stripe in line with the tenant's payment method, a change the tenant made: the customer's
/// invoice default and every live subscription's default. Returns the customer and the choice copied
/// (None: the tenant has no payment method or no customer), for `billing::collect::settle` to pay what
/// the change left due.
pub async fn align(
    state: &AppState,
    tenant: &str,
) -> Result<Option<(String, payment_methods::Choice)>, SyncError> {
    let Some(choice) = payment_methods::choice(&state.db, tenant).await? else {
        return Ok(None);
    };
    let customer = copy(state, tenant, &choice, Writes::OverDifferent).await?;
    Ok(customer.map(|c| (c, choice)))
}

/// Which of Stripe's values a copy of the tenant's payment method writes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Every one that differs: the tenant's choice is known to be newer (a change event says so).
    OverDifferent,
    /// None: it is written only where Stripe has no payment method.
    IntoGaps,
}

impl Writes {
    /// Whether the value Stripe has now, `have` (None: none), is to be written with `payment_method`.
    fn replaces(self, have: Option<&str>, payment_method: &str) -> bool {
        match self {
            Writes::OverDifferent => have != Some(payment_method),
            Writes::IntoGaps => have.is_none(),
        }
    }
}

/// How many times one correction is made under a new key after Stripe replayed the previous one: each
/// replay means the value was set and changed back within Stripe's 24 hours, which does not go on.
const GENERATIONS: u32 = 8;

/// Writes `payment_method` as the customer's invoice default and as the default of each of its live
/// subscriptions, where `copy` says. Each write's key is derived from what it does:
/// `{key_base}:{object}:{value it replaces}` (`none` for a gap). A write retried (by the client, or
/// after a crash) is recognized by Stripe as that write. When the very same correction is needed again
/// within Stripe's 24 hours (the default cleared, or set back, meanwhile), Stripe answers the first
/// write's saved reply (`Idempotent-Replayed`) and changes nothing: the object is read again and, if
/// the correction is still needed, it is made under the key's next generation (`...:g1`, `...:g2`), which
/// every replica derives alike. Setting a field to a value is idempotent in itself. The prefix marks
/// the events these writes cause as ours.
pub async fn follow(
    stripe: &StripeClient,
    customer: &str,
    payment_method: &str,
    key_base: &str,
    writes: Writes,
) -> Result<(), StripeError> {
    let key = |object: &str, have: Option<&str>, generation: u32| {
        let replaced = have.unwrap_or("none");
        match generation {
            0 => format!("{key_base}:{object}:{replaced}"),
            g => format!("{key_base}:{object}:{replaced}:g{g}"),
        }
    };
    let mut current = stripe.customer(customer).await?;
    for generation in 0..GENERATIONS {
        let have = current.invoice_payment_method_id();
        if !writes.replaces(have, payment_method) {
            break;
        }
        let written = stripe
            .set_invoice_payment_method(customer, payment_method, &key(customer, have, generation))
            .await?;
        if !written.replayed {
            break;
        }
        current = stripe.customer(customer).await?;
    }
    for listed in stripe.subscriptions_of(customer).await? {
        let live = listed.ended_at.is_none()
            && !matches!(listed.status.as_str(), "canceled" | "incomplete_expired");
        if !live {
            continue;
        }
        let mut sub = listed;
        for generation in 0..GENERATIONS {
            let have = sub.payment_method_id();
            if !writes.replaces(have, payment_method) {
                break;
            }
            let written = stripe
                .set_subscription_payment_method(
                    &sub.id,
                    payment_method,
                    &key(&sub.id, have, generation),
                )
                .await?;
            if !written.replayed {
                break;
            }
            sub = stripe.subscription(&sub.id).await?;
        }
    }
    Ok(())
}
