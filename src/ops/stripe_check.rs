//! `stripe check`: a self-test an operator runs with a test key before going live. It reads the set-up
//! `stripe setup` made, then bills a throw-away customer through the same gateway calls the monthly run
//! makes, with its card placed where Checkout puts it (on the subscription), walks a card whose bank asks
//! for authentication and a card changed after a decline (`check_collection`), and cleans up.

use super::stripe_check_collection::{authentication, card_changed_after_decline, usage_invoice};
use super::stripe_setup::PRICE_LOOKUP_KEY;
use crate::state::AppState;
use crate::stripe::gateway::{Collected, Collection, InvoiceStatus};
use crate::stripe::{Params, STRIPE_VERSION};

/// One line of the checklist.
#[derive(Debug, Clone)]
pub struct CheckItem {
    pub name: &'static str,
    pub ok: bool,
    /// What was found (ids), or what is wrong and how to fix it.
    pub detail: String,
    /// Stripe's id of the step's last request, to find it in the dashboard's logs.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.ok)
    }

    fn push(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        self.items.push(CheckItem {
            name,
            ok,
            detail: result.unwrap_or_else(|e| e),
            request_id: None,
        });
        ok
    }

    /// As [`push`](Self::push), with the Stripe request id of the step's last call.
    fn push_with(
        &mut self,
        name: &'static str,
        result: Result<String, String>,
        request_id: Option<String>,
    ) -> bool {
        let ok = self.push(name, result);
        if let Some(item) = self.items.last_mut() {
            item.request_id = request_id;
        }
        ok
    }

    /// The checklist as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            let rid = i
                .request_id
                .as_deref()
                .map(|r| format!("  [{r}]"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{} {:<34} {}{rid}\n",
                if i.ok { "ok  " } else { "FAIL" },
                i.name,
                i.detail
            ));
        }
        let failed = self.items.iter().filter(|i| !i.ok).count();
        out.push_str(&format!(
            "{} passed, {failed} failed\n",
            self.items.len() - failed
        ));
        out
    }
}

/// Refuses a live key: the check creates and charges a customer.
pub fn refuse_live_key(key: &str) -> Result<(), String> {
    if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
        return Err("stripe check creates a customer and charges a test card: run it with a test-mode key (sk_test_...), never a live one".into());
    }
    Ok(())
}

/// Runs every check; stops at the first failed step of the billing walk-through (later steps need it).
pub async fn run(state: &AppState) -> CheckReport {
    let mut report = CheckReport::default();
    let stripe = &state.stripe;
    let settings = &state.settings;

    // The set-up.
    let price_id = settings.stripe.monthly_price_id.clone();
    let price = match &price_id {
        None => Err("STRIPE_MONTHLY_PRICE_ID is not set: run `stripe setup` and add its lines to .env".to_owned()),
        Some(id) => stripe
            .get::<crate::stripe::Price>(&format!("prices/{id}"), &Params::new())
            .await
            .map_err(|e| format!("price {id}: {e}"))
            .and_then(|p| {
                let monthly = p.recurring.as_ref().is_some_and(|r| r.interval == "month");
                if p.active && monthly && p.unit_amount == Some(29_900) && p.currency == "usd" {
                    Ok(format!("{} ($299.00 per month, lookup key {:?})", p.id, p.lookup_key.as_deref().unwrap_or("")))
                } else {
                    Err(format!("{} is not an active $299.00 USD monthly price; run `stripe setup` (lookup key {PRICE_LOOKUP_KEY})", p.id))
                }
            }),
    };
    let priced = price.is_ok();
    let price_request = state.stripe.last_request_id();
    report.push_with("monthly price", price, price_request.clone());
    // Checked against the price read in that request.
    report.push_with(
        "checkout payment methods",
        payment_methods(state, priced),
        price_request,
    );

    let portal = match &settings.stripe.portal_configuration_id {
        None => Err("STRIPE_PORTAL_CONFIGURATION_ID is not set: run `stripe setup`".to_owned()),
        Some(id) => stripe
            .get::<crate::stripe::PortalConfiguration>(
                &format!("billing_portal/configurations/{id}"),
                &Params::new(),
            )
            .await
            .map_err(|e| format!("portal configuration {id}: {e}"))
            .and_then(|c| {
                if c.active {
                    Ok(c.id)
                } else {
                    Err(format!("{} is not active", c.id))
                }
            }),
    };
    report.push_with(
        "customer-portal configuration",
        portal,
        state.stripe.last_request_id(),
    );

    let url = format!("{}/api/billing/webhook", settings.http.public_base_url);
    let endpoint = super::stripe_setup::endpoint_for(stripe, &url)
        .await
        .map_err(|e| format!("webhook endpoints: {e}"))
        .and_then(|found| {
            let e = found.ok_or_else(|| {
                format!("no webhook endpoint for {url}: run `stripe setup` with this PUBLIC_BASE_URL")
            })?;
            let missing = super::stripe_setup::missing_events(&e);
            if !missing.is_empty() {
                return Err(format!("{} lacks events {}: run `stripe setup`", e.id, missing.join(", ")));
            }
            if e.api_version.as_deref() != Some(STRIPE_VERSION) {
                return Err(format!(
                    "{} sends events in API version {}, not {STRIPE_VERSION}: delete it and run `stripe setup`",
                    e.id,
                    e.api_version.as_deref().unwrap_or("(account default)")
                ));
            }
            Ok(format!("{} ({url}, {STRIPE_VERSION}, {} events)", e.id, e.enabled_events.len()))
        });
    report.push_with("webhook endpoint", endpoint, state.stripe.last_request_id());

    let Some(price_id) = price_id else {
        return report;
    };
    walk_through(state, &price_id, &mut report).await;
    report
}

/// What Checkout offers (`STRIPE_PAYMENT_METHODS`) against the price's currency (checked above to be
/// US dollars): SEPA Direct Debit takes euros only.
fn payment_methods(state: &AppState, priced: bool) -> Result<String, String> {
    state.settings.check_payment_methods().map_err(|e| e.0)?;
    let with = if priced {
        "the US dollar price"
    } else {
        "a US dollar price"
    };
    Ok(format!(
        "{} (with {with})",
        state.settings.stripe.payment_methods.join(", ")
    ))
}

/// A customer billed as the monthly run bills, then removed.
async fn walk_through(state: &AppState, price_id: &str, report: &mut CheckReport) {
    let stripe = &state.stripe;
    // Keys unique to this check: a second check must not replay the first one's writes.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let tenant = format!("stripe-check-{}", &run[..12]);
    let key = |step: &str| format!("check:{run}:{step}");

    let customer = stripe
        .create_check_customer(&tenant, &key("customer"))
        .await
        .map_err(|e| e.to_string());
    let Ok(customer) = customer.map(|c| c.id) else {
        report.push_with(
            "throw-away customer",
            Err("could not be created".into()),
            state.stripe.last_request_id(),
        );
        return;
    };
    report.push_with(
        "throw-away customer",
        Ok(customer.clone()),
        state.stripe.last_request_id(),
    );

    // Checkout saves the card on the subscription only; so does this.
    let sub = stripe
        .subscribe_with_test_card(&customer, price_id, &key("subscription"))
        .await
        .map_err(|e| e.to_string())
        .and_then(|s| match s.payment_method_id() {
            Some(pm) => Ok((
                s.clone(),
                format!("{} (card {pm} on the subscription, trial)", s.id),
            )),
            None => Err(format!("{} has no default payment method", s.id)),
        });
    let sub = match sub {
        Ok((s, detail)) => {
            report.push_with(
                "subscription with a test card",
                Ok(detail),
                state.stripe.last_request_id(),
            );
            s
        }
        Err(e) => {
            report.push_with(
                "subscription with a test card",
                Err(e),
                state.stripe.last_request_id(),
            );
            cleanup(state, &customer, &[], report).await;
            return;
        }
    };

    let billed = bill_one_dollar(state, &sub, &customer, &tenant, &key).await;
    report.push_with(
        "usage invoice billed and paid",
        billed,
        state.stripe.last_request_id(),
    );

    let confirmed = authentication(state, &customer, &tenant, &key).await;
    report.push_with(
        "bank asks to authenticate",
        confirmed,
        state.stripe.last_request_id(),
    );

    let mut subs = vec![sub.id.clone()];
    let changed =
        card_changed_after_decline(state, &customer, price_id, &tenant, &key, &mut subs).await;
    report.push_with(
        "card changed after a decline",
        changed,
        state.stripe.last_request_id(),
    );

    let checkout = stripe
        .open_checkout(
            &crate::stripe::NewCheckout {
                customer: &customer,
                tenant: &tenant,
                price: price_id,
                success_url: "https://example.com/stripe-check/success",
                cancel_url: "https://example.com/stripe-check/cancel",
                trial_days: 0,
                payment_methods: &state.settings.stripe.payment_methods,
            },
            &key("checkout"),
        )
        .await
        .map(|s| s.id)
        .map_err(|e| e.to_string());
    report.push_with("checkout session", checkout, state.stripe.last_request_id());

    let portal = stripe
        .open_portal(
            &customer,
            "https://example.com/stripe-check/return",
            state.settings.stripe.portal_configuration_id.as_deref(),
            &key("portal"),
        )
        .await
        .map(|s| s.id)
        .map_err(|e| e.to_string());
    report.push_with(
        "customer-portal session",
        portal,
        state.stripe.last_request_id(),
    );

    cleanup(state, &customer, &subs, report).await;
}

/// The monthly run's calls, in its order, for one $1.00 line.
async fn bill_one_dollar(
    state: &AppState,
    sub: &crate::stripe::Subscription,
    customer: &str,
    tenant: &str,
    key: &impl Fn(&str) -> String,
) -> Result<String, String> {
    let stripe = &state.stripe;
    if let Some(pm) = sub.payment_method_id() {
        crate::subscriptions::payment_method::follow(
            stripe,
            customer,
            pm,
            &key("payment-method"),
            crate::subscriptions::payment_method::Writes::OverDifferent,
        )
        .await
        .map_err(|e| format!("payment method: {e}"))?;
    }
    let inv = usage_invoice(state, customer, tenant, "usage", key).await?;
    match stripe
        .collect_invoice(&inv, Collection::ChargeAutomatically, &key("pay"))
        .await
        .map_err(|e| format!("pay: {e}"))?
    {
        Collected::Done(_) | Collected::AlreadySettled(_) => {}
        other => {
            return Err(format!(
                "{}: the test card's payment is {}",
                inv.id,
                other.label().replace('_', " ")
            ))
        }
    }
    let now_inv = stripe.invoice(&inv.id).await.map_err(|e| e.to_string())?;
    if InvoiceStatus::of(&now_inv) == InvoiceStatus::Paid && now_inv.amount_paid == 100 {
        Ok(format!("{} paid $1.00", inv.id))
    } else {
        Err(format!("{} is {} after paying", inv.id, now_inv.status()))
    }
}

async fn cleanup(state: &AppState, customer: &str, subs: &[String], report: &mut CheckReport) {
    let stripe = &state.stripe;
    let mut done = Vec::new();
    for sub in subs {
        match stripe.cancel_subscription_now(sub).await {
            Ok(_) => done.push(format!("canceled {sub}")),
            Err(e) => {
                report.push_with(
                    "clean-up",
                    Err(format!("cancel {sub}: {e}")),
                    state.stripe.last_request_id(),
                );
                return;
            }
        }
    }
    let result = stripe
        .delete_customer(customer)
        .await
        .map(|_| {
            done.push(format!("deleted {customer}"));
            done.join(", ")
        })
        .map_err(|e| format!("delete {customer}: {e}"));
    report.push_with("clean-up", result, state.stripe.last_request_id());
}

#[cfg(test)]
mod tests {
    #[test]
    fn live_keys_are_refused() {
        assert!(super::refuse_live_key("sk_live_abc").is_err());
        assert!(super::refuse_live_key("sk_test_abc").is_ok());
    }
}
