//! The money paths shared by the API, the hosted pages and the clock: cards, subscriptions,
//! invoice finalization and payment, checkout completion, and time passing.

use crate::clock::add_intervals;
use crate::error::ApiError;
use crate::form::Metadata;
use crate::ids::{invoice_prefix, new_id};
use serde_json::Value;

use crate::model::*;
use crate::store::Store;

pub const DEFAULT_CARD: &str = "4242424242424242";

pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    let sym = match currency {
        "usd" | "cad" | "aud" => "$",
        "eur" => "€",
        "gbp" => "£",
        _ => "",
    };
    let whole = (c / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}{sym}{grouped}.{:02}", c % 100)
}

fn luhn_ok(n: &str) -> bool {
    let digits: Vec<u32> = n.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 12 || digits.len() != n.len() {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Normalizes a typed card number and rejects what Stripe's form would reject.
pub fn check_card(raw: &str) -> Result<String, ApiError> {
    let n: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if !luhn_ok(&n) {
        return Err(
            ApiError::new(402, "card_error", "Your card number is incorrect.")
                .code("incorrect_number")
                .param("card[number]"),
        );
    }
    Ok(n)
}

/// Stripe's test payment method tokens, usable wherever a `payment_method` id is accepted.
pub fn magic_pm_number(id: &str) -> Option<&'static str> {
    match id {
        "pm_card_visa" | "tok_visa" => Some("4242424242424242"),
        "pm_card_mastercard" | "tok_mastercard" => Some("5555555555554444"),
        "pm_card_chargeCustomerFail" | "tok_chargeCustomerFail" => Some("4000000000000341"),
        _ => None,
    }
}

pub fn new_customer(s: &mut Store, email: Option<String>, name: Option<String>) -> String {
    let id = new_id("cus");
    let now = s.now();
    s.customers.insert(
        id.clone(),
        Customer {
            id: id.clone(),
            created: now,
            email,
            name,
            description: None,
            phone: None,
            metadata: Metadata::new(),
            invoice_prefix: invoice_prefix(),
            next_invoice_sequence: 1,
            default_payment_method: None,
            balance: 0,
            preferred_locales: Vec::new(),
        },
    );
    id
}

/// Creates a card payment method attached to `customer` and makes it the default.
pub fn attach_card(s: &mut Store, customer: &str, number: &str, make_default: bool) -> String {
    let id = new_id("pm");
    let now = s.now();
    let pm = PaymentMethod {
        id: id.clone(),
        created: now,
        customer: Some(customer.to_string()),
        number: number.to_string(),
        exp_month: 12,
        exp_year: 2034,
    };
    let v = s.render_pm(&pm);
    s.payment_methods.insert(id.clone(), pm);
    s.emit("payment_method.attached", v, None);
    if make_default {
        set_default_pm(s, customer, &id);
    }
    id
}

pub fn set_default_pm(s: &mut Store, customer: &str, pm: &str) {
    let Some(c) = s.customers.get(customer) else {
        return;
    };
    let before = s.render_customer(c);
    if let Some(mut c) = s.customers.get_mut(customer) {
        c.default_payment_method = Some(pm.to_string());
    }
    let after = s.render_id(customer).unwrap_or_default();
    s.emit_update("customer.updated", before, after);
}

/// A new default card for the customer, also replacing the card its subscriptions were set to
/// charge (the subscription's own payment method would otherwise win), as the portal does.
pub fn replace_card(s: &mut Store, customer: &str, number: &str) -> String {
    let pm = attach_card(s, customer, number, true);
    let subs: Vec<String> = s
        .subscriptions
        .with("customer", customer)
        .filter(|(_, x)| x.default_payment_method.is_some())
        .map(|(i, _)| i.clone())
        .collect();
    for sid in subs {
        let before = s.render_id(&sid).unwrap_or_default();
        if let Some(mut x) = s.subscriptions.get_mut(&sid) {
            x.default_payment_method = Some(pm.clone());
        }
        let after = s.render_id(&sid).unwrap_or_default();
        s.emit_update("customer.subscription.updated", before, after);
    }
    pm
}

/// The payment method an invoice is charged with, read at the moment of each attempt: its own
/// `default_payment_method`, else its subscription's, else the customer's
/// `invoice_settings.default_payment_method` (Stripe's order).
pub fn invoice_pm(s: &Store, inv: &Invoice) -> Option<String> {
    inv.default_payment_method
        .clone()
        .or_else(|| {
            inv.subscription
                .as_ref()
                .and_then(|id| s.subscriptions.get(id))
                .and_then(|sub| sub.default_payment_method.clone())
        })
        .or_else(|| {
            s.customers
                .get(&inv.customer)
                .and_then(|c| c.default_payment_method.clone())
        })
}

/// Stripe's answer when there is nothing to charge: 400 `resource_missing`, no `param`.
pub fn no_payment_method() -> ApiError {
    ApiError::invalid(
        "This customer has no attached payment source or default payment method. Please consider adding a default payment method. For more information, visit https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority.",
    )
    .code("resource_missing")
}

pub fn price_product_name(s: &Store, price: &str) -> String {
    s.prices
        .get(price)
        .and_then(|p| s.products.get(&p.product))
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "Subscription".into())
}

pub fn interval_of(s: &Store, price: &str) -> (String, u32) {
    s.prices
        .get(price)
        .and_then(|p| p.recurring.as_ref())
        .map(|r| (r.interval.clone(), r.interval_count))
        .unwrap_or_else(|| ("month".into(), 1))
}

pub struct NewSub {
    pub customer: String,
    pub items: Vec<(String, i64, Metadata)>,
    pub trial_end: Option<i64>,
    pub metadata: Metadata,
    pub collection_method: String,
    pub days_until_due: Option<i64>,
    pub default_payment_method: Option<String>,
    pub description: Option<String>,
    pub cancel_at_period_end: bool,
    /// `allow_incomplete` (Stripe's default), `default_incomplete`, `error_if_incomplete` or
    /// `pending_if_incomplete`.
    pub payment_behavior: String,
}

/// Creates a subscription and its first invoice ($0 for a trial), with Stripe's events:
/// `customer.subscription.created`, `invoice.created`, `invoice.finalized`, then
/// `invoice.paid` + `invoice.payment_succeeded` or `invoice.payment_failed`.
pub fn create_subscription(s: &mut Store, n: NewSub) -> Result<String, ApiError> {
    let now = s.now();
    let id = new_id("sub");
    let first_price = n.items.first().map(|i| i.0.clone()).unwrap_or_default();
    let currency = s
        .prices
        .get(&first_price)
        .map(|p| p.currency.clone())
        .unwrap_or_else(|| "usd".into());
    let (interval, count) = interval_of(s, &first_price);
    let trial = n.trial_end.filter(|t| *t > now);
    let anchor = trial.unwrap_or(now);
    let (period_end, periods) = match trial {
        Some(t) => (t, 0),
        None => (add_intervals(anchor, &interval, count, 1), 1),
    };
    let items: Vec<SubItem> = n
        .items
        .iter()
        .map(|(price, qty, md)| SubItem {
            id: new_id("si"),
            created: now,
            price: price.clone(),
            quantity: *qty,
            metadata: md.clone(),
        })
        .collect();
    let total: i64 = items
        .iter()
        .map(|it| s.prices.get(&it.price).map(|p| p.unit_amount).unwrap_or(0) * it.quantity)
        .sum();
    let pm = n.default_payment_method.clone().or_else(|| {
        s.customers
            .get(&n.customer)
            .and_then(|c| c.default_payment_method.clone())
    });
    let charges_now = trial.is_none() && total > 0 && n.collection_method != "send_invoice";
    let card = pm.as_ref().and_then(|p| s.payment_methods.get(p));
    let defer = n.payment_behavior == "default_incomplete";
    if charges_now && !defer {
        // Nothing is written when the first charge cannot be made: no card at all is 400,
        // a declined card with `error_if_incomplete` is 402.
        match card {
            None => return Err(no_payment_method()),
            Some(c) if c.charge_fails() && n.payment_behavior == "error_if_incomplete" => {
                return Err(ApiError::card_declined())
            }
            _ => {}
        }
    }
    let will_pay = !charges_now || (!defer && card.is_some_and(|p| !p.charge_fails()));
    let status = if trial.is_some() {
        "trialing"
    } else if will_pay {
        "active"
    } else {
        "incomplete"
    };
    let invoice_id = new_id("in");
    let sub = Subscription {
        id: id.clone(),
        created: now,
        customer: n.customer.clone(),
        status: status.into(),
        items,
        start_date: now,
        billing_cycle_anchor: anchor,
        current_period_start: now,
        current_period_end: period_end,
        periods,
        trial_start: trial.map(|_| now),
        trial_end: trial,
        trial_will_end_sent: false,
        cancel_at_period_end: n.cancel_at_period_end,
        cancel_at: if n.cancel_at_period_end {
            Some(period_end)
        } else {
            None
        },
        canceled_at: if n.cancel_at_period_end {
            Some(now)
        } else {
            None
        },
        ended_at: None,
        cancellation_reason: if n.cancel_at_period_end {
            Some("cancellation_requested".into())
        } else {
            None
        },
        cancellation_comment: None,
        cancellation_feedback: None,
        latest_invoice: Some(invoice_id.clone()),
        metadata: n.metadata,
        collection_method: n.collection_method,
        days_until_due: n.days_until_due,
        default_payment_method: n.default_payment_method,
        description: n.description,
        currency,
        pause_collection: None,
    };
    s.subscriptions.insert(id.clone(), sub);
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("customer.subscription.created", v, None);
    create_sub_invoice(
        s,
        &id,
        &invoice_id,
        "subscription_create",
        now,
        (now, period_end),
        trial.is_some(),
    );
    if defer && charges_now {
        // `default_incomplete`: the first invoice is finalized and left for the customer to pay.
        let _ = finalize(s, &invoice_id);
    } else {
        collect_new_sub_invoice(s, &invoice_id);
    }
    Ok(id)
}

/// Finalizes a fresh subscription invoice and, when it charges automatically, charges it; while
/// the subscription's collection is paused, handles it as `pause_collection[behavior]` says.
fn collect_new_sub_invoice(s: &mut Store, invoice_id: &str) {
    let paused = s
        .invoices
        .get(invoice_id)
        .and_then(|i| i.subscription.as_ref())
        .and_then(|sid| s.subscriptions.get(sid))
        .and_then(|x| x.pause_collection.as_ref())
        .map(|p| p.behavior.clone());
    if let Some(behavior) = paused {
        collect_paused(s, invoice_id, &behavior);
        return;
    }
    let _ = finalize(s, invoice_id);
    let charge = s
        .invoices
        .get(invoice_id)
        .is_some_and(|i| i.status == "open" && i.collection_method == "charge_automatically");
    if charge {
        let _ = attempt_payment(s, invoice_id, None, true);
    }
}

/// A renewal invoice made while collection is paused: `keep_as_draft` leaves it a draft that
/// does not advance; `void` finalizes and voids it; `mark_uncollectible` finalizes it and marks
/// it uncollectible. None is charged.
fn collect_paused(s: &mut Store, invoice_id: &str, behavior: &str) {
    if let Some(mut inv) = s.invoices.get_mut(invoice_id) {
        inv.auto_advance = false;
        inv.automatically_finalizes_at = None;
    }
    if behavior == "keep_as_draft" {
        return;
    }
    let _ = finalize(s, invoice_id);
    if s.invoices
        .get(invoice_id)
        .is_some_and(|i| i.status == "open")
    {
        if behavior == "void" {
            let _ = void(s, invoice_id);
        } else {
            let _ = mark_uncollectible(s, invoice_id);
        }
    }
}

/// open -> uncollectible, with `invoice.marked_uncollectible` and `invoice.updated`.
pub fn mark_uncollectible(s: &mut Store, id: &str) -> Result<Value, ApiError> {
    let now = s.now();
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    if inv.status != "open" {
        return Err(
            ApiError::invalid("You can only mark open invoices as uncollectible.")
                .code("invoice_not_editable"),
        );
    }
    let before = s.render_id(id).unwrap_or_default();
    if let Some(mut inv) = s.invoices.get_mut(id) {
        inv.status = "uncollectible".into();
        inv.marked_uncollectible_at = Some(now);
        inv.next_payment_attempt = None;
        inv.auto_advance = false;
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit("invoice.marked_uncollectible", after.clone(), None);
    s.emit_update("invoice.updated", before, after.clone());
    Ok(after)
}

/// A draft invoice for a subscription period, pulling in the customer's pending invoice items
/// as Stripe does. Its lines bill `(start, end)` in advance; the invoice's own period, as in
/// Stripe, is the one that just ended: `[prev_start, start]`.
fn create_sub_invoice(
    s: &mut Store,
    sub_id: &str,
    invoice_id: &str,
    reason: &str,
    prev_start: i64,
    (start, end): (i64, i64),
    trial: bool,
) {
    let now = s.now();
    let Some(sub) = s.subscriptions.get(sub_id).cloned() else {
        return;
    };
    let lines: Vec<SubLine> = sub
        .items
        .iter()
        .map(|it| {
            let name = price_product_name(s, &it.price);
            let price = s.prices.get(&it.price);
            let unit = price.map(|p| p.unit_amount).unwrap_or(0);
            let (interval, _) = interval_of(s, &it.price);
            let currency = price
                .map(|p| p.currency.clone())
                .unwrap_or_else(|| "usd".into());
            let (amount, description) = if trial {
                (0, format!("Trial period for {name}"))
            } else {
                (
                    unit * it.quantity,
                    format!(
                        "{} × {name} (at {} / {interval})",
                        it.quantity,
                        money(unit, &currency)
                    ),
                )
            };
            SubLine {
                id: new_id("il"),
                subscription: sub.id.clone(),
                subscription_item: it.id.clone(),
                price: it.price.clone(),
                quantity: it.quantity,
                amount,
                description,
                period_start: start,
                period_end: end,
            }
        })
        .collect();
    let pending: Vec<String> = s
        .invoiceitems
        .with("pending", &sub.customer)
        .filter(|(_, ii)| ii.subscription.as_ref().is_none_or(|x| *x == sub.id))
        .map(|(id, _)| id.clone())
        .collect();
    for id in pending.iter() {
        if let Some(mut ii) = s.invoiceitems.get_mut(id) {
            ii.invoice = Some(invoice_id.to_string());
        }
    }
    let inv = Invoice {
        subscription: Some(sub.id.clone()),
        billing_reason: reason.into(),
        collection_method: sub.collection_method.clone(),
        days_until_due: sub.days_until_due,
        auto_advance: true,
        sub_lines: lines,
        item_ids: pending.into_iter().rev().collect(),
        period_start: prev_start,
        period_end: start,
        ..Invoice::draft(
            invoice_id.to_string(),
            sub.customer.clone(),
            sub.currency.clone(),
            now,
        )
    };
    s.invoices.insert(inv.id.clone(), inv);
    let v = s.render_id(invoice_id).unwrap_or_default();
    s.emit("invoice.created", v, None);
}

/// draft -> open: number, hosted URL, due date; a $0 invoice is paid at once.
pub fn finalize(s: &mut Store, id: &str) -> Result<(), ApiError> {
    let now = s.now();
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    if inv.status != "draft" {
        return Err(ApiError::invalid(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
        )
        .code("invoice_not_editable"));
    }
    let customer = inv.customer.clone();
    let (prefix, seq) = match s.customers.get_mut(&customer) {
        Some(mut c) => {
            let seq = c.next_invoice_sequence;
            c.next_invoice_sequence += 1;
            (c.invoice_prefix.clone(), seq)
        }
        None => (invoice_prefix(), 1),
    };
    let total = s.invoices.get(id).map(|i| s.invoice_total(i)).unwrap_or(0);
    if let Some(mut inv) = s.invoices.get_mut(id) {
        inv.status = "open".into();
        inv.number = Some(format!("{prefix}-{seq:04}"));
        inv.finalized_at = Some(now);
        inv.automatically_finalizes_at = None;
        if inv.collection_method == "send_invoice" && inv.due_date.is_none() {
            inv.due_date = Some(now + inv.days_until_due.unwrap_or(30) * DAY);
        }
        if inv.auto_advance && inv.collection_method == "charge_automatically" && total > 0 {
            inv.next_payment_attempt = Some(now + HOUR);
        }
    }
    let v = s.render_id(id).unwrap_or_default();
    s.emit("invoice.finalized", v, None);
    if total <= 0 {
        mark_paid(s, id, false);
    }
    Ok(())
}

pub fn mark_paid_out_of_band(s: &mut Store, id: &str) {
    mark_paid(s, id, true);
}

fn mark_paid(s: &mut Store, id: &str, out_of_band: bool) {
    let now = s.now();
    let total = s.invoices.get(id).map(|i| s.invoice_total(i)).unwrap_or(0);
    let sub_id = match s.invoices.get_mut(id) {
        Some(mut inv) => {
            inv.status = "paid".into();
            inv.paid_at = Some(now);
            inv.amount_paid = total.max(0);
            inv.next_payment_attempt = None;
            inv.auto_advance = false;
            inv.paid_out_of_band = out_of_band;
            if total > 0 && !out_of_band {
                inv.attempted = true;
            }
            inv.subscription.clone()
        }
        None => return,
    };
    let v = s.render_id(id).unwrap_or_default();
    s.emit("invoice.paid", v.clone(), None);
    if !out_of_band {
        s.emit("invoice.payment_succeeded", v, None);
    }
    if let Some(sub_id) = sub_id {
        let recover = s
            .subscriptions
            .get(&sub_id)
            .is_some_and(|x| matches!(x.status.as_str(), "past_due" | "incomplete" | "unpaid"));
        if recover {
            set_sub_status(s, &sub_id, "active");
        }
    }
}

pub fn set_sub_status(s: &mut Store, sub_id: &str, status: &str) {
    let Some(before) = s.render_id(sub_id) else {
        return;
    };
    if let Some(mut x) = s.subscriptions.get_mut(sub_id) {
        x.status = status.into();
    }
    let after = s.render_id(sub_id).unwrap_or_default();
    s.emit_update("customer.subscription.updated", before, after);
}

/// Charges an open invoice with the payment method [`invoice_pm`] finds now (or `pm_override`).
///
/// A decline leaves it open, counts the attempt, emits `invoice.payment_failed` and puts its
/// subscription `past_due`; so does an automatic attempt (`automatic`: renewals, retries) that
/// finds no payment method at all, as Stripe's does. Asked through the API (`/pay`) with no
/// payment method, it is refused with 400 and nothing changes.
pub fn attempt_payment(
    s: &mut Store,
    id: &str,
    pm_override: Option<String>,
    automatic: bool,
) -> Result<(), ApiError> {
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    let pm_id = pm_override.or_else(|| invoice_pm(s, inv));
    let outcome = match pm_id.as_ref().map(|p| (p, s.payment_methods.get(p))) {
        None => Err(no_payment_method()),
        Some((p, None)) => Err(ApiError::no_such("PaymentMethod", p, "payment_method")),
        Some((_, Some(pm))) if pm.charge_fails() => Err(ApiError::card_declined()),
        Some(_) => Ok(()),
    };
    match outcome {
        Ok(()) => {
            if let Some(mut inv) = s.invoices.get_mut(id) {
                inv.attempt_count += 1;
            }
            mark_paid(s, id, false);
            Ok(())
        }
        Err(e) if e.status == 402 || automatic => {
            record_failed_attempt(s, id);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// A failed charge: the invoice stays open, the attempt is counted, the next automatic retry is
/// scheduled 3 days on (up to 4 attempts), `invoice.payment_failed`, subscription `past_due`.
fn record_failed_attempt(s: &mut Store, id: &str) {
    let now = s.now();
    let sub_id = match s.invoices.get_mut(id) {
        Some(mut inv) => {
            inv.attempt_count += 1;
            inv.attempted = true;
            // Smart retries, simplified: a few more tries a few days apart while auto-advancing.
            inv.next_payment_attempt = if inv.auto_advance && inv.attempt_count < 4 {
                Some(now + 3 * DAY)
            } else {
                None
            };
            inv.subscription.clone()
        }
        None => None,
    };
    let v = s.render_id(id).unwrap_or_default();
    s.emit("invoice.payment_failed", v, None);
    if let Some(sub_id) = sub_id {
        let status = s.subscriptions.get(&sub_id).map(|x| x.status.clone());
        if matches!(status.as_deref(), Some("active") | Some("trialing")) {
            set_sub_status(s, &sub_id, "past_due");
        }
    }
}

pub fn void(s: &mut Store, id: &str) -> Result<(), ApiError> {
    let now = s.now();
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    if inv.status != "open" && inv.status != "uncollectible" {
        return Err(ApiError::invalid(format!(
            "You can only pass in open or uncollectible invoices. This invoice is {}.",
            inv.status
        ))
        .code("invoice_not_editable"));
    }
    if let Some(mut inv) = s.invoices.get_mut(id) {
        inv.status = "void".into();
        inv.voided_at = Some(now);
        inv.next_payment_attempt = None;
        inv.auto_advance = false;
    }
    let v = s.render_id(id).unwrap_or_default();
    s.emit("invoice.voided", v, None);
    Ok(())
}

/// Ends a subscription now: `canceled`, `ended_at`, `customer.subscription.deleted`.
pub fn end_subscription(s: &mut Store, id: &str, reason: &str) {
    let now = s.now();
    if let Some(mut x) = s.subscriptions.get_mut(id) {
        x.status = "canceled".into();
        x.ended_at = Some(now);
        x.canceled_at.get_or_insert(now);
        if x.cancellation_reason.is_none() {
            x.cancellation_reason = Some(reason.into());
        }
    }
    let v = s.render_id(id).unwrap_or_default();
    s.emit("customer.subscription.deleted", v, None);
}

/// Sets or clears `cancel_at_period_end` as Stripe does (also `cancel_at`, `canceled_at`).
pub fn set_cancel_at_period_end(s: &mut Store, id: &str, on: bool) {
    let now = s.now();
    if let Some(mut x) = s.subscriptions.get_mut(id) {
        x.cancel_at_period_end = on;
        if on {
            x.cancel_at = Some(x.current_period_end);
            x.canceled_at = Some(now);
            x.cancellation_reason = Some("cancellation_requested".into());
        } else {
            x.cancel_at = None;
            x.canceled_at = None;
            x.cancellation_reason = None;
        }
    }
}

// ---- checkout ------------------------------------------------------------------------------

/// What the hosted page's pay button does. A declined card without a trial fails with 402 and
/// changes nothing; otherwise the customer, card, subscription and first invoice are created.
pub fn complete_checkout(
    s: &mut Store,
    id: &str,
    card: &str,
    email: Option<String>,
) -> Result<(), ApiError> {
    let cs = s
        .checkout_sessions
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::no_such("checkout.session", id, "session"))?;
    if cs.status != "open" {
        return Err(ApiError::invalid(format!(
            "This Checkout Session is no longer active (status: {}).",
            cs.status
        ))
        .code("checkout_session_not_open"));
    }
    let number = check_card(card)?;
    let trial_end = cs
        .trial_end
        .or(cs.trial_period_days.map(|d| s.now() + d * DAY));
    let probe = PaymentMethod {
        id: String::new(),
        created: 0,
        customer: None,
        number: number.clone(),
        exp_month: 12,
        exp_year: 2034,
    };
    if trial_end.is_none() && probe.charge_fails() {
        return Err(ApiError::card_declined());
    }
    let customer = match cs.customer.clone() {
        Some(c) => c,
        None => {
            let email = email.or(cs.customer_email.clone());
            let c = new_customer(s, email, None);
            let v = s.render_id(&c).unwrap_or_default();
            s.emit("customer.created", v, None);
            c
        }
    };
    // Checkout saves the card as the new subscription's default payment method only; the
    // customer's `invoice_settings.default_payment_method` is left as it was.
    let pm = attach_card(s, &customer, &number, false);
    let sub = create_subscription(
        s,
        NewSub {
            customer: customer.clone(),
            items: cs
                .line_items
                .iter()
                .map(|l| (l.price.clone(), l.quantity, Metadata::new()))
                .collect(),
            trial_end,
            metadata: cs.sub_metadata.clone(),
            collection_method: "charge_automatically".into(),
            days_until_due: None,
            default_payment_method: Some(pm),
            description: cs.sub_description.clone(),
            cancel_at_period_end: false,
            payment_behavior: "allow_incomplete".into(),
        },
    )?;
    let invoice = s
        .subscriptions
        .get(&sub)
        .and_then(|x| x.latest_invoice.clone());
    if let Some(mut x) = s.checkout_sessions.get_mut(id) {
        x.status = "complete".into();
        x.payment_status = if trial_end.is_some() {
            "no_payment_required".into()
        } else {
            "paid".into()
        };
        x.customer = Some(customer);
        x.subscription = Some(sub);
        x.invoice = invoice;
    }
    let v = s.render_id(id).unwrap_or_default();
    s.emit("checkout.session.completed", v, None);
    Ok(())
}

// ---- the clock -----------------------------------------------------------------------------

enum Due {
    TrialWillEnd(String),
    PeriodEnd(String),
    CancelAt(String),
    IncompleteExpiry(String),
    AutoFinalize(String),
    RetryCharge(String),
    ResumeCollection(String),
}

/// The earliest thing due at or before `target`: subscriptions first when tied, then invoices;
/// read from the tables' schedules, not by scanning them.
fn next_due(s: &Store, target: i64) -> Option<(i64, Due)> {
    let sub = s.subscriptions.first_due();
    let inv = s.invoices.first_due();
    let pick_sub = match (&sub, &inv) {
        (Some((ts, _, _)), Some((ti, _, _))) => ts <= ti,
        (Some(_), None) => true,
        _ => false,
    };
    if pick_sub {
        let (t, tag, id) = sub?;
        if t > target {
            return None;
        }
        let id = id.clone();
        let due = match tag {
            sub_due::PERIOD_END => Due::PeriodEnd(id),
            sub_due::TRIAL_WILL_END => Due::TrialWillEnd(id),
            sub_due::INCOMPLETE_EXPIRY => Due::IncompleteExpiry(id),
            sub_due::CANCEL_AT => Due::CancelAt(id),
            _ => Due::ResumeCollection(id),
        };
        Some((t, due))
    } else {
        let (t, tag, id) = inv?;
        if t > target {
            return None;
        }
        let id = id.clone();
        let due = match tag {
            invoice_due::AUTO_FINALIZE => Due::AutoFinalize(id),
            _ => Due::RetryCharge(id),
        };
        Some((t, due))
    }
}

/// Moves the clock to `target`, processing everything due on the way in time order, each at
/// its own moment.
pub fn advance_to(s: &mut Store, target: i64) {
    let mut guard = 0;
    while let Some((t, due)) = next_due(s, target) {
        guard += 1;
        if guard > 10_000_000 {
            break;
        }
        s.clock.pin(t);
        match due {
            Due::TrialWillEnd(id) => {
                if let Some(mut x) = s.subscriptions.get_mut(&id) {
                    x.trial_will_end_sent = true;
                }
                let v = s.render_id(&id).unwrap_or_default();
                s.emit("customer.subscription.trial_will_end", v, None);
            }
            Due::PeriodEnd(id) => period_end(s, &id),
            Due::CancelAt(id) => end_subscription(s, &id, "cancellation_requested"),
            Due::IncompleteExpiry(id) => set_sub_status(s, &id, "incomplete_expired"),
            Due::AutoFinalize(id) => {
                let _ = finalize(s, &id);
            }
            Due::ResumeCollection(id) => resume_collection(s, &id),
            Due::RetryCharge(id) => {
                if s.invoices
                    .get(&id)
                    .is_some_and(|i| i.collection_method == "charge_automatically")
                {
                    let _ = attempt_payment(s, &id, None, true);
                } else if let Some(mut i) = s.invoices.get_mut(&id) {
                    i.next_payment_attempt = None;
                }
            }
        }
    }
    s.clock.unpin();
    s.clock.set(target);
}

/// `pause_collection[resumes_at]` has passed: collection resumes, `pause_collection` is null.
fn resume_collection(s: &mut Store, id: &str) {
    let Some(before) = s.render_id(id) else {
        return;
    };
    if let Some(mut x) = s.subscriptions.get_mut(id) {
        x.pause_collection = None;
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("customer.subscription.updated", before, after);
}

/// A period (or the trial) ends: the subscription ends if set to, otherwise the next period
/// starts and is invoiced in advance; a trial becomes `active`.
fn period_end(s: &mut Store, id: &str) {
    let Some(x) = s.subscriptions.get(id) else {
        return;
    };
    if x.cancel_at_period_end || x.cancel_at.is_some_and(|t| t <= x.current_period_end) {
        end_subscription(s, id, "cancellation_requested");
        return;
    }
    let before = s.render_id(id).unwrap_or_default();
    let price = x.items.first().map(|i| i.price.clone()).unwrap_or_default();
    let (interval, count) = interval_of(s, &price);
    let prev_start = x.current_period_start;
    let start = x.current_period_end;
    let periods = x.periods + 1;
    let end = add_intervals(x.billing_cycle_anchor, &interval, count, periods);
    let invoice_id = new_id("in");
    if let Some(mut x) = s.subscriptions.get_mut(id) {
        if x.status == "trialing" {
            x.status = "active".into();
        }
        x.periods = periods;
        x.current_period_start = start;
        x.current_period_end = end.max(start + 1);
        x.latest_invoice = Some(invoice_id.clone());
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("customer.subscription.updated", before, after);
    create_sub_invoice(
        s,
        id,
        &invoice_id,
        "subscription_cycle",
        prev_start,
        (start, end),
        false,
    );
    collect_new_sub_invoice(s, &invoice_id);
}
