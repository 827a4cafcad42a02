//! The cards of the billing page: a failed payment, the subscription or the plan, usage and charges, invoices.

use super::*;
use crate::dashboard::Dashboard;
use crate::db::{invoices, subscriptions, tenants};
use crate::domain::PaymentMethodView;
use crate::domain::SubscriptionStatus;
use crate::domain::{BillingPeriod, Cents};
use crate::http::web::html::{badge, count, date, date_opt, date_time, money, notice};
use crate::http::web::session::PageUser;
use crate::state::AppState;
use crate::subscriptions::checkout;
use crate::subscriptions::plan::{PLAN_AMOUNT_CENTS, PLAN_NAME};
use maud::{html, Markup};

/// What failed, when, and what to do: open invoices Stripe could not charge (`failed`: declined, not
/// waiting for the customer's confirmation), or a past-due subscription whose failure we have not been
/// told the details of.
pub(super) fn failed_banner(
    failed: &[&invoices::FailedPayment],
    standing: &Standing,
    tz: chrono_tz::Tz,
    admin: bool,
    ctx: &Acting,
) -> Markup {
    let latest = failed.first();
    let more = failed.len().saturating_sub(1);
    html! {
        div class="notice error billing-alert" id="payment-failed" role="alert" {
            strong { "Payment failed." }
            " "
            @if let Some(f) = latest {
                span id="payment-failed-what" {
                    "Stripe could not charge " (money(f.amount_remaining_cents))
                    " for invoice " (f.number.as_deref().unwrap_or(&f.stripe_invoice_id))
                    " (" (invoice_subject(f.billing_period.as_deref())) ") on "
                    (date_time(f.last_failed_at, tz)) " " (zone(f.last_failed_at, tz)) "."
                }
                " "
                @if f.attempts > 1 {
                    "It has tried " (f.attempts) " times. "
                }
                @if more > 0 {
                    (more) " more unpaid " (if more == 1 { "invoice" } else { "invoices" }) " also failed. "
                }
                "It is tried again automatically; update the card and the unpaid invoices are charged to \
                 it at once. "
            } @else {
                "The last payment for the subscription did not go through. Update the card and the unpaid \
                 invoices are charged to it at once. "
            }
            @if let Some(until) = standing.access_until {
                span id="access-until" {
                    "The organization keeps access until " (date(until, tz)) "."
                }
            }
            div class="actions" {
                @if admin {
                    form method="post" action={ "/billing/portal" (ctx.suffix) } {
                        (ctx.csrf)
                        button type="submit" id="update-card" { "Update card in the customer portal" }
                    }
                } @else {
                    span { "Ask an organization admin to update the card." }
                }
                @if let Some(u) = latest.and_then(|f| web_link(f.hosted_invoice_url.as_deref())) {
                    a href=(u) rel="noopener noreferrer" id="failed-invoice" { "View the invoice" }
                }
            }
        }
    }
}

/// The bank asks the customer to authenticate a payment (3-D Secure): only confirming it on the invoice's
/// page pays it; a new card would not (the same question comes back).
pub(super) fn action_required_banner(
    waiting: &[&invoices::FailedPayment],
    standing: &Standing,
    tz: chrono_tz::Tz,
) -> Markup {
    let first = waiting.first();
    let more = waiting.len().saturating_sub(1);
    html! {
        div class="notice warn billing-alert" id="payment-action-required" role="alert" {
            strong { "Your bank asks you to confirm this payment." }
            " "
            @if let Some(f) = first {
                span id="action-required-what" {
                    "The payment of " (money(f.amount_remaining_cents)) " for invoice "
                    (f.number.as_deref().unwrap_or(&f.stripe_invoice_id))
                    " (" (invoice_subject(f.billing_period.as_deref())) ") waits for your confirmation: \
                     open the invoice and confirm the payment with your bank. Changing the card is not \
                     needed."
                }
                @if more > 0 {
                    " " (more) " more " (if more == 1 { "invoice waits" } else { "invoices wait" }) " too."
                }
            }
            " "
            @if let Some(until) = standing.access_until {
                span id="access-until" {
                    "The organization keeps access until " (date(until, tz)) "."
                }
            }
            @if let Some(u) = first.and_then(|f| web_link(f.hosted_invoice_url.as_deref())) {
                div class="actions" {
                    a href=(u) rel="noopener noreferrer" id="confirm-payment" class="button" {
                        "Confirm the payment"
                    }
                }
            }
        }
    }
}

/// A bank debit in flight: neither paid nor failed until the bank answers.
pub(super) fn processing_notice(processing: &[invoices::ProcessingPayment]) -> Markup {
    html! {
        div class="notice info" id="payment-processing" role="status" {
            strong { "Payment processing (bank debit)." }
            @for p in processing {
                " "
                span class="processing-what" {
                    "A bank debit of " (money(p.amount_cents)) " for invoice "
                    (p.number.as_deref().unwrap_or(&p.stripe_invoice_id))
                    " (" (invoice_subject(p.billing_period.as_deref())) ") is processing."
                }
            }
            " Banks take up to four business days to confirm a debit; there is nothing to do meanwhile."
        }
    }
}

/// "November 2026 usage" for a usage invoice, "subscription" otherwise.
pub(super) fn invoice_subject(billing_period: Option<&str>) -> String {
    match billing_period.and_then(|p| p.parse::<BillingPeriod>().ok()) {
        Some(p) => format!("{} usage", p.long_name()),
        None => "subscription".to_owned(),
    }
}

/// Only web links: a stored URL of another scheme is not made clickable.
pub(super) fn web_link(url: Option<&str>) -> Option<&str> {
    url.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

/// "Visa •••• 4242, expires 12/2034".
pub(super) fn payment_method_text(pm: &PaymentMethodView) -> String {
    let brand = match pm.brand.as_deref() {
        Some("visa") => "Visa".to_owned(),
        Some("mastercard") => "Mastercard".to_owned(),
        Some("amex") => "American Express".to_owned(),
        Some("discover") => "Discover".to_owned(),
        Some(b) if !b.is_empty() => {
            let mut c = b.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        _ => match pm.kind.as_str() {
            "card" => "Card".to_owned(),
            _ => "Bank account".to_owned(),
        },
    };
    let mut out = brand;
    if let Some(last4) = &pm.last4 {
        out.push_str(" •••• ");
        out.push_str(last4);
    }
    if let (Some(m), Some(y)) = (pm.exp_month, pm.exp_year) {
        out.push_str(&format!(", expires {m:02}/{y}"));
    }
    out
}

pub(super) fn subscription_card(
    sub: &subscriptions::SubscriptionRow,
    dash: &Dashboard,
    tz: chrono_tz::Tz,
    admin: bool,
    ctx: &Acting,
) -> Markup {
    let period_end = date_opt(sub.current_period_end, tz);
    let trialing = sub.state() == SubscriptionStatus::Trialing;
    let suffix = &ctx.suffix;
    let csrf = &ctx.csrf;
    html! {
        section class="card" id="subscription" aria-labelledby="subscription-h" {
            h2 id="subscription-h" {
                @match &ctx.for_other {
                    Some(name) => { (name) "'s subscription" }
                    None => { "Your subscription" }
                }
            }
            p { strong { (PLAN_NAME) } " " span id="subscription-status" { (badge(&sub.status)) } }
            dl class="facts" {
                dt { "Price" }
                dd { (money(sub.amount_cents)) " / month" }
                @if trialing {
                    dt { "Trial ends" }
                    dd id="trial-end" { (date_opt(sub.trial_end, tz)) }
                }
                @if sub.cancel_at_period_end {
                    dt { "Ends on" }
                    dd { (period_end) }
                }
                dt { "Next charge" }
                dd id="next-charge" {
                    @if sub.cancel_at_period_end {
                        "None: the subscription ends on " (period_end)
                    } @else if trialing {
                        // The first charge is at the trial's end, which is the end of the trial period.
                        (money(sub.amount_cents)) " on " (date_opt(sub.trial_end.or(sub.current_period_end), tz))
                        span class="muted" { ", when the trial ends" }
                    } @else {
                        (money(sub.amount_cents)) " on " (period_end)
                    }
                }
                dt { "Payment method" }
                dd id="payment-method" {
                    @match &dash.payment_method {
                        Some(pm) => { (payment_method_text(pm)) }
                        None => { span class="muted" { "None on file" } }
                    }
                }
            }
            @if sub.cancel_at_period_end {
                (notice(
                    "warn",
                    "cancel-notice",
                    &format!(
                        "This subscription is set to cancel on {period_end}. It stays active until then, and you can reactivate it at any time before."
                    ),
                ))
            }
            @if admin {
                div class="actions" {
                    form method="post" action={ "/billing/portal" (suffix) } {
                        (csrf)
                        button type="submit" class="secondary" id="manage-payment" {
                            "Manage payment methods"
                        }
                    }
                    @if sub.cancel_at_period_end {
                        form method="post" action={ "/billing/reactivate" (suffix) } {
                            (csrf)
                            button type="submit" id="reactivate" { (ctx.subscription_label("Reactivate")) }
                        }
                    } @else {
                        a class="button danger-outline" id="cancel-subscription"
                            href={ "/billing/cancel" (suffix) } {
                            (ctx.subscription_label("Cancel"))
                        }
                    }
                }
            }
        }
    }
}

/// The longest trial this user may give on the subscribe form (as `checkout` enforces it).
pub(super) fn max_trial_days(state: &AppState, user: &PageUser) -> u32 {
    if user.caller.role == crate::auth::Role::SuperAdmin {
        checkout::MAX_GRANTED_TRIAL_DAYS
    } else {
        state
            .settings
            .billing
            .max_trial_days
            .min(checkout::MAX_GRANTED_TRIAL_DAYS)
    }
}

/// The one wording of a trial that is not a whole number in range.
pub(super) fn trial_days_message(max: u32) -> String {
    format!("Enter a whole number of days from 0 to {max}, or leave it empty for no trial.")
}

pub(super) fn plan_card(
    state: &AppState,
    user: &PageUser,
    tenant: &tenants::Tenant,
    standing: &Standing,
    admin: bool,
    ctx: &Acting,
    trial: Option<&TrialInput>,
) -> Markup {
    let max = max_trial_days(state, user);
    html! {
        section class="card" id="plan" aria-labelledby="plan-h" {
            h2 id="plan-h" { (PLAN_NAME) }
            p class="price" id="plan-price" { (money(PLAN_AMOUNT_CENTS)) " " small { "/ month" } }
            ul class="features" {
                @for f in crate::subscriptions::plan::plan_features(state) {
                    li { (f) }
                }
            }
            @if tenant.is_demo {
                p class="muted" { "Demo accounts have full access without a subscription." }
            } @else if admin {
                // `novalidate`: the field's errors come from the server, in one wording, next to it.
                form method="post" action={ "/billing/checkout" (ctx.suffix) } novalidate {
                    (ctx.csrf)
                    @if standing.subscribed_before {
                        p class="hint" id="no-trial" {
                            "A free trial is only for an organization's first subscription; a new one \
                             starts charging at once."
                        }
                    } @else {
                        div class={ "field" @if trial.is_some() { " invalid" } } {
                            label for="trial-days" { "Free trial (days, optional)" }
                            // Text, not number: a browser keeps what was typed, so it can be shown back.
                            input type="text" id="trial-days" name="trial_days" inputmode="numeric"
                                autocomplete="off" placeholder="0"
                                value=[trial.map(|t| t.value.as_str())]
                                aria-invalid=[trial.map(|_| "true")]
                                aria-describedby={
                                    @if trial.is_some() { "trial-days-error " }
                                    "trial-days-hint"
                                };
                            @if let Some(t) = trial {
                                div class="field-error" id="trial-days-error" { (t.error) }
                            }
                            div class="hint" id="trial-days-hint" {
                                "Up to " (max) " days. No charge until the trial ends, and usage during \
                                 the trial is free."
                            }
                        }
                    }
                    button type="submit" id="subscribe" {
                        @match &ctx.for_other {
                            Some(name) => { "Subscribe " (name) " · " (money(PLAN_AMOUNT_CENTS)) " / month" }
                            None => { "Subscribe · " (money(PLAN_AMOUNT_CENTS)) " / month" }
                        }
                    }
                }
            } @else {
                p class="muted" {
                    "Your organization has no subscription. An organization admin can subscribe."
                }
            }
        }
    }
}

/// When the usage shown under upcoming charges is invoiced, and why it may be nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChargesDue {
    /// The run on the 1st bills it: the tenant has a subscription (in any state, canceled too).
    FirstOfMonth,
    /// As `FirstOfMonth`, but the subscription is in its trial: usage inside the trial is free.
    Trial {
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The run skips a tenant without a subscription; its usage waits for one, it is never dropped.
    OnceSubscribed,
    /// A demo account: exempt.
    Never,
}

/// As the monthly run decides: a tenant is billed when it has a Stripe customer and a subscription (a
/// subscription is only ever made for a Stripe customer).
pub(super) fn charges_due(
    tenant: &tenants::Tenant,
    live: Option<&subscriptions::SubscriptionRow>,
    subscribed_before: bool,
) -> ChargesDue {
    if tenant.is_demo {
        return ChargesDue::Never;
    }
    match live {
        Some(s) if s.state() == SubscriptionStatus::Trialing => ChargesDue::Trial {
            until: s.trial_end.or(s.current_period_end),
        },
        Some(_) => ChargesDue::FirstOfMonth,
        None if subscribed_before => ChargesDue::FirstOfMonth,
        None => ChargesDue::OnceSubscribed,
    }
}

/// Why the upcoming charges are what they are, in a sentence or two (in particular why they are $0).
pub(super) fn charges_explained(due: ChargesDue, total: Cents, tz: chrono_tz::Tz) -> String {
    const ON_THE_FIRST: &str =
        "Billed on the first of next month, on a separate invoice from the subscription.";
    match due {
        ChargesDue::FirstOfMonth => ON_THE_FIRST.to_owned(),
        ChargesDue::Trial { until } => {
            let until = date_opt(until, tz);
            if total.0 == 0 {
                format!(
                    "Free during your trial until {until}. Usage after that is billed on the first of \
                     the following month, on a separate invoice from the subscription."
                )
            } else {
                format!(
                    "Usage during your trial, until {until}, is free; the total is usage from before \
                     the trial. {ON_THE_FIRST}"
                )
            }
        }
        ChargesDue::OnceSubscribed => "Nothing is charged now: your organization has no \
             subscription, so this usage is not invoiced on the 1st. It is kept, not dropped: it is \
             billed once you subscribe, on the first usage invoice after that."
            .to_owned(),
        ChargesDue::Never => "Nothing is charged: demo accounts are exempt from billing charges, \
             and usage while an organization is a demo account is never billed."
            .to_owned(),
    }
}

pub(super) fn usage_card(state: &AppState, d: &Dashboard, due: ChargesDue) -> Markup {
    let u = &d.current_period_usage;
    let c = &d.upcoming_charges;
    let tz = state.settings.billing.timezone;
    let day = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| date(t.with_timezone(&chrono::Utc), tz))
            .unwrap_or_default()
    };
    // The period's end is exclusive: the last day shown is the one before it.
    let last_day = chrono::DateTime::parse_from_rfc3339(&u.end_date)
        .map(|t| {
            date(
                t.with_timezone(&chrono::Utc) - chrono::Duration::seconds(1),
                tz,
            )
        })
        .unwrap_or_default();
    let total_label = match due {
        ChargesDue::OnceSubscribed => "Total, billed once you subscribe",
        _ => "Total so far",
    };
    html! {
        section class="card" id="usage" aria-labelledby="usage-h" {
            h2 id="usage-h" { "Usage this period" }
            p class="muted" { (day(&u.start_date)) " – " (last_day) }
            dl class="facts" {
                dt { "Speech-to-text words" }
                dd id="usage-stt" { (count(u.total_stt_words)) }
                dt { "Text-to-speech words" }
                dd id="usage-tts" { (count(u.total_tts_words)) }
                dt { "Phone calls" }
                dd id="usage-calls" { (count(u.total_phone_calls)) }
            }
            h3 {
                @if due == ChargesDue::OnceSubscribed {
                    "Usage waiting for a subscription"
                } @else {
                    "Upcoming charges"
                }
            }
            div class="table-scroll" {
                table id="upcoming" {
                    tbody {
                        tr {
                            td { "Voice usage: " (count(c.voice_words_count)) " words" }
                            td class="num" { (c.voice_usage_cents) }
                        }
                        tr {
                            td { "Phone calls: " (count(c.call_count)) }
                            td class="num" { (c.call_charges_cents) }
                        }
                        @for late in &c.late {
                            tr {
                                td {
                                    "Earlier usage (" (late.period.long_name()) "): "
                                    (count(late.voice_words_count)) " words, " (count(late.call_count)) " calls"
                                }
                                td class="num" { (late.voice_usage_cents + late.call_charges_cents) }
                            }
                        }
                        tr {
                            th { (total_label) }
                            th class="num" id="upcoming-total" { (c.total_charges_cents) }
                        }
                    }
                }
            }
            p class="hint" id="upcoming-when" { (charges_explained(due, c.total_charges_cents, tz)) }
        }
    }
}

pub(super) fn invoices_card(state: &AppState, d: &Dashboard, standing: &Standing) -> Markup {
    let failed = &standing.failed;
    let tz = state.settings.billing.timezone;
    html! {
        section class="card" id="invoices" aria-labelledby="invoices-h" {
            h2 id="invoices-h" { "Invoices" }
            @if d.recent_invoices.is_empty() {
                p class="muted" { "No invoices yet." }
            } @else {
                div class="table-scroll" {
                    table {
                        thead {
                            tr {
                                th { "For" }
                                th { "Description" }
                                th class="num" { "Amount" }
                                th { "Status" }
                                th { span class="muted" { "Invoice" } }
                            }
                        }
                        tbody {
                            @for i in &d.recent_invoices {
                                @let what = i
                                    .lines
                                    .iter()
                                    .map(|l| l.description.as_str())
                                    .collect::<Vec<_>>()
                                    .join("; ");
                                @let usage_month = i
                                    .billing_period
                                    .as_deref()
                                    .and_then(|p| p.parse::<BillingPeriod>().ok());
                                @let failure = failed
                                    .iter()
                                    .find(|f| f.stripe_invoice_id == i.stripe_invoice_id);
                                @let processing = standing
                                    .processing
                                    .iter()
                                    .any(|p| p.stripe_invoice_id == i.stripe_invoice_id);
                                tr id={ "invoice-" (i.stripe_invoice_id) } {
                                    td class="invoice-for" {
                                        @match usage_month {
                                            // A usage invoice is created after its month: name the month.
                                            Some(p) => { (p.long_name()) " usage" }
                                            None => { (issued(i.period_end.or(i.period_start), tz)) }
                                        }
                                    }
                                    td { (if what.is_empty() { "Subscription" } else { &what }) }
                                    td class="num" { (money(i.amount_due_cents)) }
                                    td {
                                        @if failure.is_some_and(|f| f.action_required) {
                                            span class="badge warn" { "confirm payment" }
                                        } @else if failure.is_some() {
                                            span class="badge bad" { "payment failed" }
                                        } @else if processing {
                                            span class="badge info" { "processing (bank debit)" }
                                        } @else {
                                            (badge(&i.status))
                                        }
                                    }
                                    td {
                                        @if let Some(u) = web_link(i.hosted_invoice_url.as_deref()) {
                                            a href=(u) rel="noopener noreferrer" {
                                                "View" span class="muted" { " invoice" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A subscription invoice, by the day it was issued. Stripe's `period_end` on a subscription invoice is
/// the moment it was made (the previous period's end for a renewal), so its start–end range would name
/// the period before the one the invoice charges for.
pub(super) fn issued(at: Option<chrono::DateTime<chrono::Utc>>, tz: chrono_tz::Tz) -> String {
    format!("Subscription, {}", date_opt(at, tz))
}

/// The time zone's abbreviation at `t` ("UTC", "EST"), so a time of day is not read in the wrong zone.
pub(super) fn zone(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(
        brand: Option<&str>,
        last4: Option<&str>,
        exp: Option<(i32, i32)>,
    ) -> PaymentMethodView {
        PaymentMethodView {
            kind: "card".to_owned(),
            brand: brand.map(str::to_owned),
            last4: last4.map(str::to_owned),
            exp_month: exp.map(|e| e.0),
            exp_year: exp.map(|e| e.1),
        }
    }

    #[test]
    fn payment_methods_read_as_people_know_them() {
        assert_eq!(
            payment_method_text(&card(Some("visa"), Some("4242"), Some((3, 2034)))),
            "Visa •••• 4242, expires 03/2034"
        );
        assert_eq!(
            payment_method_text(&card(Some("amex"), Some("0005"), None)),
            "American Express •••• 0005"
        );
        assert_eq!(
            payment_method_text(&card(Some("jcb"), Some("0000"), None)),
            "Jcb •••• 0000"
        );
        assert_eq!(payment_method_text(&card(None, None, None)), "Card");
        let bank = PaymentMethodView {
            kind: "us_bank_account".to_owned(),
            ..card(None, Some("6789"), None)
        };
        assert_eq!(payment_method_text(&bank), "Bank account •••• 6789");
    }

    #[test]
    fn invoices_name_their_month() {
        assert_eq!(invoice_subject(Some("2026-11")), "November 2026 usage");
        assert_eq!(invoice_subject(None), "subscription");
        // Not a period: not presented as one.
        assert_eq!(invoice_subject(Some("soon")), "subscription");
    }

    #[test]
    fn zero_charges_say_why() {
        let tz = chrono_tz::UTC;
        let until = chrono::DateTime::parse_from_rfc3339("2026-12-16T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let trial = ChargesDue::Trial { until: Some(until) };
        assert!(charges_explained(trial, Cents(0), tz)
            .starts_with("Free during your trial until Dec 16, 2026."));
        // Usage from before the trial is billed: the total is not called free.
        let some = charges_explained(trial, Cents(120), tz);
        assert!(
            some.contains("the total is usage from before the trial"),
            "{some}"
        );
        assert!(charges_explained(ChargesDue::OnceSubscribed, Cents(0), tz)
            .contains("billed once you subscribe"));
        assert!(charges_explained(ChargesDue::Never, Cents(0), tz)
            .starts_with("Nothing is charged: demo accounts are exempt"));
        assert!(charges_explained(ChargesDue::FirstOfMonth, Cents(0), tz)
            .starts_with("Billed on the first of next month"));
    }
}
