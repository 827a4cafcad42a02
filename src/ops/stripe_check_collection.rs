//! `stripe check`'s walks through collecting a payment that does not go through at once: a card whose
//! bank asks for authentication, and a card changed after a decline. Each step is made as the service
//! makes it, on the throw-away customer, under keys unique to the check.

use crate::domain::time::now;
use crate::domain::{BillingPeriod, Cents};
use crate::state::AppState;
use crate::stripe::gateway::{Collected, Collection, InvoiceStatus, UsageInvoice, UsageLine};
use crate::stripe::{Invoice, Params, PaymentMethod, Subscription};

/// A $1.00 usage invoice for the throw-away customer, created and finalized as the monthly run does,
/// under `key("{step}:...")`.
pub(super) async fn usage_invoice(
    state: &AppState,
    customer: &str,
    tenant: &str,
    step: &str,
    key: &impl Fn(&str) -> String,
) -> Result<Invoice, String> {
    let stripe = &state.stripe;
    let period = BillingPeriod::containing(now(), state.settings.billing.timezone);
    let collection = Collection::ChargeAutomatically;
    let inv = stripe
        .create_usage_invoice(
            &UsageInvoice {
                customer,
                tenant,
                period,
                collection,
            },
            &key(&format!("{step}:invoice")),
        )
        .await
        .map_err(|e| format!("create: {e}"))?;
    stripe
        .add_usage_line(
            &UsageLine {
                customer,
                invoice: &inv.id,
                tenant,
                period,
                usage_period: period,
                line_no: 1,
                amount: Cents(100),
                description: "Phone Calls: 1 call",
            },
            &key(&format!("{step}:line")),
        )
        .await
        .map_err(|e| format!("line: {e}"))?;
    stripe
        .finalize_invoice(&inv.id, collection, &key(&format!("{step}:finalize")))
        .await
        .map_err(|e| format!("finalize: {e}"))
}

/// Attaches Stripe's test payment method `token` and makes it the customer's invoice default, as the
/// portal writes a new card; returns its id.
async fn customer_card(
    state: &AppState,
    customer: &str,
    token: &str,
    key: &str,
) -> Result<String, String> {
    let pm: PaymentMethod = state
        .stripe
        .post(
            &format!("payment_methods/{token}/attach"),
            &Params::new().set("customer", customer),
            &format!("{key}:attach"),
        )
        .await
        .map_err(|e| format!("attach {token}: {e}"))?;
    state
        .stripe
        .set_invoice_payment_method(customer, &pm.id, &format!("{key}:default"))
        .await
        .map_err(|e| format!("default {token}: {e}"))?;
    Ok(pm.id)
}

/// Whether the Stripe answering is the simulator (Stripe has no `/_sim` routes).
async fn simulator(state: &AppState) -> bool {
    let url = format!("{}/_sim/clock", state.stripe.base());
    matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success())
}

/// A card that needs authentication: its off-session charge is refused (Stripe answers `/pay` with
/// `invoice_payment_intent_requires_action`) and the invoice waits for the customer; confirmed, it is
/// paid. On the way, the invoice read with its payments must hold them (`payments` is includable: the
/// service asks for it by name), or a debit processing and a payment waiting for the customer would go
/// unseen. The simulator confirms through its control route; on Stripe only a person can, on the hosted
/// invoice page, whose address the line gives.
pub(super) async fn authentication(
    state: &AppState,
    customer: &str,
    tenant: &str,
    key: &impl Fn(&str) -> String,
) -> Result<String, String> {
    let stripe = &state.stripe;
    customer_card(
        state,
        customer,
        "pm_card_authenticationRequired",
        &key("3ds:card"),
    )
    .await?;
    let inv = usage_invoice(state, customer, tenant, "3ds", key).await?;
    let collected = stripe
        .collect_invoice(&inv, Collection::ChargeAutomatically, &key("3ds:pay"))
        .await
        .map_err(|e| format!("pay: {e}"))?;
    if !matches!(collected, Collected::ActionRequired) {
        return Err(format!(
            "{}: expected the bank to ask for authentication; the payment is {}",
            inv.id,
            collected.label()
        ));
    }
    let waiting = stripe
        .invoice_with_payment(&inv.id)
        .await
        .map_err(|e| e.to_string())?;
    if waiting.payments.is_none() {
        return Err(format!(
            "{}: Stripe did not include the invoice's payments when asked for them (expand[]=payments): \
             a bank debit processing or a payment waiting for the customer would go unseen",
            inv.id
        ));
    }
    if waiting.payment_state() != Some("requires_action") {
        return Err(format!("{}: its payment does not require action", inv.id));
    }
    if !simulator(state).await {
        let page = waiting.hosted_invoice_url.unwrap_or_default();
        return Ok(format!(
            "{} requires authentication (its payments read, the payment waiting for the customer); a person confirms it at {page}",
            inv.id
        ));
    }
    let confirm = format!("{}/_sim/invoices/{}/confirm", stripe.base(), inv.id);
    reqwest::Client::new()
        .post(&confirm)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("confirm: {e}"))?;
    let paid = stripe.invoice(&inv.id).await.map_err(|e| e.to_string())?;
    if InvoiceStatus::of(&paid) == InvoiceStatus::Paid {
        Ok(format!(
            "{} required authentication and was paid once confirmed",
            inv.id
        ))
    } else {
        Err(format!(
            "{} is {} after confirmation",
            inv.id,
            paid.status()
        ))
    }
}

/// A subscription invoice and a usage invoice declined, then a new card on the customer only, as the
/// portal writes it; the service's answer (the card copied onto the subscription, each open invoice
/// paid once at once) pays both. The subscription made is added to `subs`, for the clean-up.
pub(super) async fn card_changed_after_decline(
    state: &AppState,
    customer: &str,
    price: &str,
    tenant: &str,
    key: &impl Fn(&str) -> String,
    subs: &mut Vec<String>,
) -> Result<String, String> {
    let stripe = &state.stripe;
    let declining = customer_card(
        state,
        customer,
        "pm_card_chargeCustomerFail",
        &key("decline:card"),
    )
    .await?;
    let sub: Subscription = stripe
        .post(
            "subscriptions",
            &Params::new()
                .set("customer", customer)
                .set("items[0][price]", price)
                .set("default_payment_method", &declining)
                .set("payment_behavior", "default_incomplete")
                .metadata("stripe_check", "true"),
            &key("decline:subscription"),
        )
        .await
        .map_err(|e| format!("subscription: {e}"))?;
    subs.push(sub.id.clone());
    let usage = usage_invoice(state, customer, tenant, "decline", key).await?;
    let open = stripe
        .open_invoices_of(customer)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<String> = open.iter().map(|i| i.id.clone()).collect();
    if !ids.contains(&usage.id) || ids.len() < 2 {
        return Err(format!(
            "expected the subscription's and the usage invoice open, found {ids:?}"
        ));
    }
    for inv in &open {
        let declined = pay(state, inv, &key(&format!("decline:pay:{}", inv.id))).await?;
        if !matches!(declined, Collected::Declined) {
            return Err(format!(
                "{}: expected a decline; the payment is {}",
                inv.id,
                declined.label()
            ));
        }
    }
    let good = customer_card(state, customer, "pm_card_visa", &key("changed:card")).await?;
    crate::subscriptions::payment_method::follow(
        stripe,
        customer,
        &good,
        &key("changed:follow"),
        crate::subscriptions::payment_method::Writes::OverDifferent,
    )
    .await
    .map_err(|e| format!("copy the new card: {e}"))?;
    for id in &ids {
        let inv = stripe.invoice(id).await.map_err(|e| e.to_string())?;
        let paid = pay(state, &inv, &key(&format!("changed:pay:{id}"))).await?;
        if paid.label() != "paid" {
            return Err(format!(
                "{id}: after the change the payment is {}",
                paid.label()
            ));
        }
    }
    Ok(format!(
        "{} paid at once with the new card",
        ids.join(" and ")
    ))
}

async fn pay(state: &AppState, inv: &Invoice, key: &str) -> Result<Collected, String> {
    state
        .stripe
        .collect_invoice(inv, Collection::ChargeAutomatically, key)
        .await
        .map_err(|e| format!("pay {}: {e}", inv.id))
}
