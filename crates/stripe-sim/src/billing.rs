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

/// Stripe's "always authenticate" test card (https://docs.stripe.com/testing#regulatory-cards).
pub const AUTH_CARD: &str = "4000002760003184";

/// How long an ACH Direct Debit payment stays `processing` before the bank answers ("up to 4
/// business days", https://docs.stripe.com/payments/ach-direct-debit#timing), in simulated days.
pub const DEBIT_PROCESSING_DAYS: i64 = 4;

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
        "pm_card_authenticationRequired" | "tok_authenticationRequired" => Some(AUTH_CARD),
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
    attach_pm(s, customer, PmKind::Card, number, make_default)
}

/// Creates a payment method of `kind` attached to `customer`, optionally the customer's default.
pub fn attach_pm(
    s: &mut Store,
    customer: &str,
    kind: PmKind,
    number: &str,
    make_default: bool,
) -> String {
    let id = new_id("pm");
    let now = s.now();
    let pm = PaymentMethod {
        id: id.clone(),
        created: now,
        customer: Some(customer.to_string()),
        kind,
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

/// Stripe's ACH test bank account numbers are digits only (the routing number is 110000000).
pub fn check_bank_account(raw: &str) -> Result<String, ApiError> {
    let n: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if (4..=17).contains(&n.len()) && n.chars().all(|c| c.is_ascii_digit()) {
        Ok(n)
    } else {
        Err(
            ApiError::invalid("Invalid account number: it must be 4 to 17 digits.")
                .param("us_bank_account[account_number]"),
        )
    }
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

/// What the customer portal's card update does: a new card, written where
/// `/_sim/portal/card_update_writes` says (by default the customer's invoice default only, which
/// leaves the retries of a subscription that has its own payment method on the old card).
/// Nothing is charged at once: the next attempt uses the card the invoice's chain finds then.
pub fn replace_card(s: &mut Store, customer: &str, number: &str) -> String {
    let writes = s.settings.portal_card_writes;
    let pm = attach_card(s, customer, number, writes.customer());
    if writes.subscriptions() {
        let subs: Vec<String> = s
            .subscriptions
            .with("customer", customer)
            .filter(|(_, x)| x.status != "canceled" && x.status != "incomplete_expired")
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
    /// The first charge is made with the customer present (Checkout's pay button): a card that
    /// needs authentication is authenticated there.
    pub on_session: bool,
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
    let will_pay = !charges_now
        || (!defer
            && card
                .is_some_and(|p| !p.charge_fails() && (n.on_session || !p.needs_authentication())));
    let first_attempt = if n.on_session {
        Attempt::OnSession
    } else {
        Attempt::Automatic
    };
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
        collect_new_sub_invoice(s, &invoice_id, first_attempt);
    }
    Ok(id)
}

/// Finalizes a fresh subscription invoice and, when it charges automatically, charges it; while
/// the subscription's collection is paused, handles it as `pause_collection[behavior]` says.
fn collect_new_sub_invoice(s: &mut Store, invoice_id: &str, attempt: Attempt) {
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
        let _ = attempt_payment(s, invoice_id, None, attempt);
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
        // Stripe makes the invoice's default payment at finalization, kept with its amount due.
        if total > 0 && inv.payment_intent.is_none() {
            inv.payment_intent = Some(new_id("pi"));
        }
    }
    if let Some(pi) = s.invoices.get(id).and_then(|i| i.payment_intent.clone()) {
        s.payment_intents.insert(pi, id.to_string());
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
            inv.processing_until = None;
            if total > 0 && !out_of_band {
                inv.attempted = true;
                inv.pi_status = "succeeded".into();
                inv.pi_error = None;
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

/// Who asks for a charge, which decides whether a card that needs authentication can pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Stripe's own attempt (renewal, retry): off-session.
    Automatic,
    /// `POST /v1/invoices/{id}/pay`: off-session too (`off_session` defaults to true).
    Api,
    /// The customer is present and authenticates (hosted invoice page, Checkout's pay button).
    OnSession,
}

/// How a charge attempt ends.
enum Charge {
    Paid,
    /// A bank debit: neither paid nor failed until the bank answers.
    Processing,
    Failed(ApiError),
    /// The bank asks the customer to authenticate (3-D Secure).
    ActionRequired(ApiError),
}

/// Stripe's answer to an off-session charge of a card that needs authentication (a renewal, a retry):
/// the reason the invoice's PaymentIntent keeps as its `last_payment_error`.
pub fn authentication_required() -> ApiError {
    ApiError::new(
        402,
        "card_error",
        "Your card was declined. This transaction requires authentication.",
    )
    .code("authentication_required")
}

/// Stripe's answer to `POST /v1/invoices/{id}/pay` when the payment needs the customer's
/// authentication: its own code, not the PaymentIntent's, and no decline code. Not confirmed: the
/// HTTP status (402, the status of Stripe's `card_error`s).
pub fn invoice_requires_action() -> ApiError {
    ApiError::new(
        402,
        "card_error",
        "This payment requires additional user action before it can be completed successfully. \
         Payment can be completed using the PaymentIntent associated with the invoice. For more \
         details see: https://stripe.com/docs/billing/subscriptions/payment#handling-action-required",
    )
    .code("invoice_payment_intent_requires_action")
}

/// A debit of a bank account Stripe has blocked after a return (see
/// [`Store::blocked_bank_accounts`]): the payment fails at once. Not confirmed: the status and type
/// of the answer to `/pay` (402 `card_error` here, as for other failed payments).
fn bank_account_blocked() -> ApiError {
    ApiError::new(
        402,
        "card_error",
        "This bank account has failed verification in the past and can not be used. Contact us if \
         you wish to attempt to use these bank account credentials.",
    )
    .code("payment_method_bank_account_blocked")
}

/// A declined charge of one of Stripe's declining test cards, with its decline code.
fn declined(decline_code: &'static str) -> ApiError {
    let e = ApiError::card_declined().decline(decline_code);
    match decline_code {
        "insufficient_funds" => ApiError {
            message: "Your card has insufficient funds.".into(),
            ..e
        },
        _ => e,
    }
}

/// Charges an open invoice with the payment method [`invoice_pm`] finds now (or `pm_override`).
///
/// A decline leaves it open, counts the attempt, emits `invoice.payment_failed` and puts its
/// subscription `past_due`; so does an automatic attempt that finds no payment method at all, as
/// Stripe's does. Asked through the API (`/pay`) with no payment method, it is refused with 400
/// and nothing changes. A card that needs authentication fails off-session as a decline does and
/// also emits `invoice.payment_action_required`; a bank debit starts `processing`.
pub fn attempt_payment(
    s: &mut Store,
    id: &str,
    pm_override: Option<String>,
    attempt: Attempt,
) -> Result<(), ApiError> {
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    if inv.processing_until.is_some() {
        // A debit in flight is the invoice's payment until the bank answers.
        return match attempt {
            Attempt::Automatic => Ok(()),
            _ => Err(payment_processing()),
        };
    }
    let pm_id = pm_override.or_else(|| invoice_pm(s, inv));
    let charge = match pm_id.as_ref().map(|p| (p, s.payment_methods.get(p))) {
        None => Charge::Failed(no_payment_method()),
        Some((p, None)) => Charge::Failed(ApiError::no_such("PaymentMethod", p, "payment_method")),
        Some((_, Some(pm))) if pm.decline_code().is_some() => {
            Charge::Failed(declined(pm.decline_code().unwrap_or("generic_decline")))
        }
        Some((_, Some(pm))) if pm.needs_authentication() && attempt != Attempt::OnSession => {
            Charge::ActionRequired(authentication_required())
        }
        Some((_, Some(pm)))
            if pm.is_bank_debit() && s.blocked_bank_accounts.contains(&pm.number) =>
        {
            Charge::Failed(bank_account_blocked())
        }
        Some((_, Some(pm))) if pm.is_bank_debit() => Charge::Processing,
        Some(_) => Charge::Paid,
    };
    let now = s.now();
    if let Some(mut inv) = s.invoices.get_mut(id) {
        if pm_id.is_some() {
            inv.pi_payment_method = pm_id.clone();
        }
    }
    match charge {
        Charge::Paid => {
            if let Some(mut inv) = s.invoices.get_mut(id) {
                inv.attempt_count += 1;
            }
            mark_paid(s, id, false);
            Ok(())
        }
        Charge::Processing => {
            let before = s.render_id(id).unwrap_or_default();
            if let Some(mut inv) = s.invoices.get_mut(id) {
                inv.attempt_count += 1;
                inv.attempted = true;
                inv.next_payment_attempt = None;
                inv.processing_until = Some(now + DEBIT_PROCESSING_DAYS * DAY);
                inv.pi_status = "processing".into();
                inv.pi_error = None;
            }
            let after = s.render_id(id).unwrap_or_default();
            s.emit_update("invoice.updated", before, after);
            Ok(())
        }
        Charge::ActionRequired(e) => {
            record_failed_attempt(s, id, "requires_action", &e, true);
            let v = s.render_id(id).unwrap_or_default();
            s.emit("invoice.payment_action_required", v, None);
            // `/pay` answers with the invoice's code; the PaymentIntent keeps the card's.
            Err(match attempt {
                Attempt::Api => invoice_requires_action(),
                _ => e,
            })
        }
        Charge::Failed(e) if e.status == 402 || attempt == Attempt::Automatic => {
            record_failed_attempt(s, id, "requires_payment_method", &e, true);
            Err(e)
        }
        Charge::Failed(e) => Err(e),
    }
}

/// `/pay` while a bank debit of the invoice is processing. Not confirmed: Stripe's wording.
fn payment_processing() -> ApiError {
    ApiError::invalid(
        "This invoice has a payment processing; it can be paid again only if that payment fails.",
    )
}

/// A failed charge: the invoice stays open, the attempt is counted (unless it was when it started: a
/// bank debit), `invoice.payment_failed`,
/// subscription `past_due`. The next automatic retry is scheduled 3 days on (up to 4 attempts) for
/// a subscription's invoice, and for a one-off invoice only when the account retries those
/// (`/_sim/settings`, off by default, as in Stripe's dashboard).
fn record_failed_attempt(s: &mut Store, id: &str, pi_status: &str, e: &ApiError, counted: bool) {
    let now = s.now();
    let retry_one_off = s.settings.retry_one_off_invoices;
    let sub_id = match s.invoices.get_mut(id) {
        Some(mut inv) => {
            if counted {
                inv.attempt_count += 1;
            }
            inv.attempted = true;
            inv.processing_until = None;
            inv.pi_status = pi_status.into();
            let code = e.code.unwrap_or("card_declined");
            let decline = e.decline_code.unwrap_or(if code == "card_declined" {
                "generic_decline"
            } else {
                code
            });
            inv.pi_error = Some((code.to_string(), decline.to_string(), e.message.clone()));
            let retried = inv.subscription.is_some() || retry_one_off;
            // Smart retries, simplified: a few more tries a few days apart while auto-advancing.
            inv.next_payment_attempt = if retried && inv.auto_advance && inv.attempt_count < 4 {
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

/// The bank answers a processing debit: paid, or failed (Stripe's failing test account numbers);
/// a Checkout session whose first payment it was learns it too.
fn settle_debit(s: &mut Store, id: &str) {
    let Some(inv) = s.invoices.get(id) else {
        return;
    };
    if inv.processing_until.is_none() || inv.status != "open" {
        return;
    }
    let failure = inv
        .pi_payment_method
        .as_ref()
        .and_then(|p| s.payment_methods.get(p))
        .and_then(|pm| pm.debit_failure());
    let succeeded = failure.is_none();
    match failure {
        None => mark_paid(s, id, false),
        Some((code, decline, message)) => {
            let e = ApiError::new(402, "card_error", message)
                .code(code)
                .decline(decline);
            // The debit was counted as an attempt when it started.
            record_failed_attempt(s, id, "requires_payment_method", &e, false);
            // Returned for a reason other than insufficient funds: NACHA's rules forbid a new
            // debit until the customer has fixed it, so Stripe blocks the account.
            if code != "insufficient_funds" {
                if let Some(number) = s
                    .invoices
                    .get(id)
                    .and_then(|i| i.pi_payment_method.clone())
                    .and_then(|p| s.payment_methods.get(&p).map(|pm| pm.number.clone()))
                {
                    s.blocked_bank_accounts.insert(number);
                }
            }
        }
    }
    let session = s
        .checkout_sessions
        .newest_first()
        .find(|(_, cs)| cs.invoice.as_deref() == Some(id))
        .map(|(sid, _)| sid.clone());
    if let Some(sid) = session {
        if succeeded {
            if let Some(mut cs) = s.checkout_sessions.get_mut(&sid) {
                cs.payment_status = "paid".into();
            }
        }
        let v = s.render_id(&sid).unwrap_or_default();
        let kind = if succeeded {
            "checkout.session.async_payment_succeeded"
        } else {
            "checkout.session.async_payment_failed"
        };
        s.emit(kind, v, None);
    }
}

/// What the hosted invoice page's confirm button does after the customer authenticated: the
/// payment that required action is made on-session with the same payment method.
pub fn confirm_payment(s: &mut Store, id: &str) -> Result<(), ApiError> {
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    if inv.status != "open" || inv.pi_status != "requires_action" {
        return Err(ApiError::invalid(format!(
            "This invoice's payment does not require action (invoice {}, payment {}).",
            inv.status, inv.pi_status
        )));
    }
    let pm = inv.pi_payment_method.clone();
    attempt_payment(s, id, pm, Attempt::OnSession)
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
        inv.pi_status = "canceled".into();
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

/// How the customer pays on the hosted checkout page.
#[derive(Debug, Clone)]
pub enum CheckoutPayment {
    Card(String),
    /// ACH Direct Debit from this account number (Stripe's test bank).
    Bank(String),
}

/// What the hosted page's pay button does. A declined card without a trial fails with 402 and
/// changes nothing; otherwise the customer, payment method, subscription and first invoice are
/// created. A bank debit leaves the first invoice `processing` and the session `unpaid` until the
/// bank answers (`checkout.session.async_payment_succeeded` or `_failed`).
pub fn complete_checkout(
    s: &mut Store,
    id: &str,
    payment: CheckoutPayment,
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
    let (kind, number) = match &payment {
        CheckoutPayment::Card(card) => (PmKind::Card, check_card(card)?),
        CheckoutPayment::Bank(account) => (PmKind::UsBankAccount, check_bank_account(account)?),
    };
    if !cs.payment_method_types.iter().any(|t| t == kind.as_str()) {
        return Err(ApiError::invalid(format!(
            "This Checkout Session does not accept {} payments (payment_method_types: {}).",
            kind.as_str(),
            cs.payment_method_types.join(", ")
        ))
        .param("payment_method_types"));
    }
    let trial_end = cs
        .trial_end
        .or(cs.trial_period_days.map(|d| s.now() + d * DAY));
    let probe = PaymentMethod {
        id: String::new(),
        created: 0,
        customer: None,
        kind,
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
    // Checkout saves the payment method as the new subscription's default payment method only;
    // the customer's `invoice_settings.default_payment_method` is left as it was.
    let pm = attach_pm(s, &customer, kind, &number, false);
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
            on_session: true,
        },
    )?;
    let invoice = s
        .subscriptions
        .get(&sub)
        .and_then(|x| x.latest_invoice.clone());
    let paid = invoice
        .as_ref()
        .and_then(|i| s.invoices.get(i))
        .is_some_and(|i| i.status == "paid");
    if let Some(mut x) = s.checkout_sessions.get_mut(id) {
        x.status = "complete".into();
        x.payment_status = if trial_end.is_some() {
            "no_payment_required".into()
        } else if paid {
            "paid".into()
        } else {
            "unpaid".into()
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
    SettleDebit(String),
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
            invoice_due::SETTLE_DEBIT => Due::SettleDebit(id),
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
            Due::SettleDebit(id) => settle_debit(s, &id),
            Due::RetryCharge(id) => {
                if s.invoices
                    .get(&id)
                    .is_some_and(|i| i.collection_method == "charge_automatically")
                {
                    let _ = attempt_payment(s, &id, None, Attempt::Automatic);
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
    collect_new_sub_invoice(s, &invoice_id, Attempt::Automatic);
}
