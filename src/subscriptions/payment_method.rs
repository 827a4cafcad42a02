//! Which payment method pays the monthly usage invoice.
//!
//! Checkout saves the card or bank account it collects as the new subscription's
//! `default_payment_method`, not as the customer's invoice default. Stripe charges an invoice with its
//! own payment method, else its subscription's, else the customer's invoice default; our usage invoice
//! belongs to no subscription, so without the customer's default it has nothing to be charged with.
//!
//! We keep the customer's invoice default in step with the subscription's payment method rather than
//! pin one on each usage invoice: a pinned card stays on the invoice when the customer changes cards in
//! the portal, and Stripe's retries of a declined usage invoice would keep charging the old one.

use crate::state::AppState;
use crate::stripe::{StripeError, Subscription};

/// Makes the subscription's payment method the customer's invoice default when the customer has none,
/// or, with `changed` (the subscription's payment method was just replaced), when it differs.
pub async fn keep_in_step(
    state: &AppState,
    sub: &Subscription,
    changed: bool,
) -> Result<(), StripeError> {
    let Some(pm) = sub.payment_method_id() else {
        return Ok(());
    };
    let customer = match sub.customer.object() {
        Some(c) => c.clone(),
        None => state.stripe.customer(sub.customer.id()).await?,
    };
    let current = customer.invoice_payment_method_id();
    if current == Some(pm) || (current.is_some() && !changed) {
        return Ok(());
    }
    // Setting a field to a value is idempotent by itself, and the same change may be needed again
    // later (after the default was cleared): a key of its own for each decision, so that Stripe does not
    // answer a later one with an earlier one's saved reply (the client's retries reuse it).
    let key = format!(
        "customer:{}:invoice-payment-method:{pm}:{}",
        customer.id,
        uuid::Uuid::new_v4().simple()
    );
    state
        .stripe
        .set_invoice_payment_method(&customer.id, pm, &key)
        .await?;
    tracing::info!(customer = %customer.id, subscription = %sub.id, "invoice payment method follows the subscription's");
    Ok(())
}
