//! `/billing`: a tenant's plan, subscription, usage, upcoming charges and invoices, with the admin's
//! actions (subscribe, cancel with confirmation, reactivate, payment methods). Every action calls the same
//! functions as the JSON API.

use super::html::{self, badge, count, date, date_opt, date_time, money, notice};
use super::session::{error_page, require, PageUser, Posted};
use crate::dashboard::{self, Dashboard};
use crate::db::payment_methods::PaymentMethodView;
use crate::db::{invoices, subscriptions, tenants};
use crate::domain::{BillingPeriod, Cents, TenantId};
use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::stripe::SubscriptionStatus;
use crate::subscriptions::plan::{PLAN_AMOUNT_CENTS, PLAN_NAME};
use crate::subscriptions::{access, cancellation, checkout, portal};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing", get(show))
        .route("/billing/checkout", post(checkout))
        .route("/billing/cancel", get(confirm_cancel).post(cancel))
        .route("/billing/reactivate", post(reactivate))
        .route("/billing/portal", post(portal))
}

#[derive(Deserialize)]
struct PageQuery {
    tenant_id: Option<String>,
    done: Option<String>,
}

/// Messages for `?done=`: fixed sentences, so nothing from the URL is echoed into the page.
fn done_notice(key: &str) -> Option<(&'static str, &'static str)> {
    Some(match key {
        "subscribed" => (
            "ok",
            "Thank you! Your payment details were accepted; the subscription appears below once Stripe confirms it.",
        ),
        "checkout_canceled" => ("info", "Checkout was canceled. Nothing was charged."),
        "canceled" => (
            "ok",
            "Cancellation scheduled: the subscription stays active until the end of the current period.",
        ),
        "reactivated" => ("ok", "Your subscription is reactivated and will renew as usual."),
        "portal" => ("info", "Welcome back from the customer portal."),
        _ => return None,
    })
}

/// `?tenant_id=` for a super admin acting on another organization's page, so its forms stay on it.
fn tenant_suffix(user: &PageUser, tenant: &TenantId) -> String {
    if tenant.as_str() == user.caller.claims.tenant_id {
        String::new()
    } else {
        let encoded: String = form_urlencoded::byte_serialize(tenant.as_str().as_bytes()).collect();
        format!("?tenant_id={encoded}")
    }
}

async fn show(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<PageQuery>,
) -> Response {
    let tenant = match user.tenant(q.tenant_id.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let done = q.done.as_deref().and_then(done_notice);
    render(&state, &user, &tenant, done, None, None).await
}

/// The subscribe form as it was sent, when its trial is to be fixed: the value stays in the field and
/// the message stands next to it.
struct TrialInput {
    value: String,
    error: String,
}

/// What the page shows beside the dashboard's figures, from our copy of Stripe (API.md's dashboard
/// does not list these, so the page reads them itself).
struct Standing {
    /// Open invoices Stripe failed to charge, latest failure first.
    failed: Vec<invoices::FailedPayment>,
    /// Until when a past-due organization keeps access.
    access_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the organization has had a subscription (a new one then gets no trial).
    subscribed_before: bool,
}

async fn standing(
    state: &AppState,
    tenant: &TenantId,
    live: Option<&subscriptions::SubscriptionRow>,
) -> Result<Standing, sqlx::Error> {
    let failed = invoices::failed_payments(&state.db, tenant).await?;
    let past_due = live.is_some_and(|s| s.state() == SubscriptionStatus::PastDue);
    let access_until = if past_due {
        let grace = chrono::Duration::days(i64::from(state.settings.billing.past_due_grace_days));
        access::for_tenant(&state.db, tenant, grace, crate::domain::time::now())
            .await?
            .filter(|a| a.reason == access::AccessReason::PastDue)
            .and_then(|a| a.until)
    } else {
        None
    };
    let subscribed_before = live.is_some()
        || !subscriptions::for_tenant(&state.db, tenant.as_str())
            .await?
            .is_empty();
    Ok(Standing {
        failed,
        access_until,
        subscribed_before,
    })
}

/// The whole page, with an optional notice (after an action) or error (an action that failed).
async fn render(
    state: &AppState,
    user: &PageUser,
    tenant_id: &TenantId,
    done: Option<(&str, &str)>,
    error: Option<ApiError>,
    trial: Option<TrialInput>,
) -> Response {
    let loaded = async {
        let tenant = tenants::get(&state.db, tenant_id).await?;
        let live = subscriptions::live_for_tenant(&state.db, tenant_id.as_str()).await?;
        Ok::<_, ApiError>((tenant, live))
    }
    .await;
    let (tenant, live) = match loaded {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Some(tenant) = tenant else {
        if user.caller.role == crate::auth::Role::SuperAdmin {
            return Redirect::to("/admin/billing").into_response();
        }
        return error_page(
            user,
            StatusCode::NOT_FOUND,
            "Your organization is not registered with billing yet. Ask the platform's administrator to add it.",
        );
    };
    let dash = match dashboard::load(state, tenant_id).await {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let standing = match standing(state, tenant_id, live.as_ref()).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tz = state.settings.billing.timezone;
    let admin = user.caller.role.manages_tenant();
    let ctx = Acting {
        suffix: tenant_suffix(user, tenant_id),
        csrf: html::csrf_field(&user.csrf),
        for_other: for_other(user, &tenant),
    };
    let due = charges_due(&tenant, live.as_ref(), standing.subscribed_before);
    let past_due = live
        .as_ref()
        .is_some_and(|s| s.state() == SubscriptionStatus::PastDue);

    let body = html! {
        h1 { "Billing" }
        p class="sub" { (tenant.name) " " span class="muted" { "· " (tenant.subdomain) } }
        @if let Some(name) = &ctx.for_other {
            div class="notice warn" id="acting-as" role="status" {
                strong { "You are viewing " (name) "'s billing as super admin." }
                " Subscribe, cancel, reactivate and the customer portal act for " (name) "."
            }
        }
        @if let Some(e) = &error {
            (notice("error", "action-error", &e.detail))
        }
        @if let Some((kind, text)) = done {
            (notice(kind, "done", text))
        }
        @if !standing.failed.is_empty() || past_due {
            (failed_banner(&standing, tz, admin, &ctx))
        }
        @if let Some(message) = dash.demo_message {
            div class="notice info" id="demo-banner" role="status" {
                strong { "Demo account." } " " (message)
            }
        }
        @if !admin {
            (notice(
                "info",
                "member-note",
                "You can see your organization's billing; only organization admins can change it.",
            ))
        }
        div class="grid" {
            // The subscription, or the plan to subscribe to.
            @match (&live, tenant.is_demo) {
                (Some(sub), false) => {
                    (subscription_card(sub, &dash, tz, admin, &ctx))
                }
                _ => { (plan_card(state, user, &tenant, &standing, admin, &ctx, trial.as_ref())) }
            }
            (usage_card(state, &dash, due))
        }
        (invoices_card(state, &dash, &standing.failed))
    };

    let label = user.label();
    let status = match (&error, &trial) {
        (Some(e), _) => e.status,
        (None, Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        (None, None) => StatusCode::OK,
    };
    super::html_response(status, html::page(&user.chrome("Billing", &label), body))
}

/// Whose page the forms act on, for the labels and the links.
struct Acting {
    /// `?tenant_id=...` when a super admin acts on another organization.
    suffix: String,
    csrf: Markup,
    /// That organization's name, when the page is not the viewer's own.
    for_other: Option<String>,
}

impl Acting {
    /// "Cancel subscription", or for a super admin on another page "Cancel Acme's subscription".
    fn subscription_label(&self, verb: &str) -> String {
        match &self.for_other {
            Some(name) => format!("{verb} {name}'s subscription"),
            None => format!("{verb} subscription"),
        }
    }
}

/// The organization's name when a super admin views another organization's page.
fn for_other(user: &PageUser, tenant: &tenants::Tenant) -> Option<String> {
    (user.caller.role == crate::auth::Role::SuperAdmin && tenant.id != user.caller.claims.tenant_id)
        .then(|| tenant.name.clone())
}

/// What failed, when, and what to do: open invoices Stripe could not charge, or a past-due
/// subscription whose failure we have not been told the details of.
fn failed_banner(standing: &Standing, tz: chrono_tz::Tz, admin: bool, ctx: &Acting) -> Markup {
    let latest = standing.failed.first();
    let more = standing.failed.len().saturating_sub(1);
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
                "Stripe tries again automatically; update the card and the next attempt uses it. "
            } @else {
                "The last payment for the subscription did not go through. Update the card and Stripe \
                 uses it at its next attempt. "
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

/// "November 2026 usage" for a usage invoice, "subscription" otherwise.
fn invoice_subject(billing_period: Option<&str>) -> String {
    match billing_period.and_then(|p| p.parse::<BillingPeriod>().ok()) {
        Some(p) => format!("{} usage", p.long_name()),
        None => "subscription".to_owned(),
    }
}

/// Only web links: a stored URL of another scheme is not made clickable.
fn web_link(url: Option<&str>) -> Option<&str> {
    url.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

/// "Visa •••• 4242, expires 12/2034".
fn payment_method_text(pm: &PaymentMethodView) -> String {
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

fn subscription_card(
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
fn max_trial_days(state: &AppState, user: &PageUser) -> u32 {
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
fn trial_days_message(max: u32) -> String {
    format!("Enter a whole number of days from 0 to {max}, or leave it empty for no trial.")
}

fn plan_card(
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
enum ChargesDue {
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
fn charges_due(
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
fn charges_explained(due: ChargesDue, total: Cents, tz: chrono_tz::Tz) -> String {
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

fn usage_card(state: &AppState, d: &Dashboard, due: ChargesDue) -> Markup {
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

fn invoices_card(state: &AppState, d: &Dashboard, failed: &[invoices::FailedPayment]) -> Markup {
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
                                @let payment_failed = failed
                                    .iter()
                                    .any(|f| f.stripe_invoice_id == i.stripe_invoice_id);
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
                                        @if payment_failed {
                                            span class="badge bad" { "payment failed" }
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
fn issued(at: Option<chrono::DateTime<chrono::Utc>>, tz: chrono_tz::Tz) -> String {
    format!("Subscription, {}", date_opt(at, tz))
}

/// The time zone's abbreviation at `t` ("UTC", "EST"), so a time of day is not read in the wrong zone.
fn zone(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Z").to_string()
}

/// The tenant an admin action applies to; members are refused: only organization admins (and super
/// admins) act on billing.
fn admin_tenant(user: &PageUser, requested: Option<&str>) -> Result<TenantId, Response> {
    require(
        user,
        user.caller.role.manages_tenant(),
        "Only an organization admin can change billing.",
    )?;
    user.tenant(requested)
}

#[derive(Deserialize)]
struct TenantQuery {
    tenant_id: Option<String>,
}

#[derive(Deserialize)]
struct CheckoutForm {
    #[serde(default)]
    trial_days: String,
}

async fn checkout(
    State(state): State<AppState>,
    Query(q): Query<TenantQuery>,
    posted: Posted<CheckoutForm>,
) -> Response {
    let user = &posted.user;
    let tenant = match admin_tenant(user, q.tenant_id.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let typed = posted.form.trial_days.trim();
    let max = max_trial_days(&state, user);
    let trial_days = if typed.is_empty() {
        None
    } else {
        match typed.parse::<u32>().ok().filter(|d| *d <= max) {
            Some(d) => Some(d),
            None => {
                let trial = TrialInput {
                    value: typed.to_owned(),
                    error: trial_days_message(max),
                };
                return render(&state, user, &tenant, None, None, Some(trial)).await;
            }
        }
    };
    let base = format!("{}/billing", state.settings.http.public_base_url);
    let suffix = tenant_suffix(user, &tenant);
    let sep = if suffix.is_empty() { "?" } else { "&" };
    let started = checkout::start_checkout(
        &state,
        &tenant,
        &user.caller,
        &format!("{base}{suffix}{sep}done=subscribed"),
        &format!("{base}{suffix}{sep}done=checkout_canceled"),
        trial_days,
    )
    .await
    .map_err(ApiError::from);
    match started {
        Ok(s) => Redirect::to(&s.checkout_url).into_response(),
        // The trial policy refused it (a trial for an organization that subscribed before): say so
        // next to the field.
        Err(e) if e.code == ErrorCode::InvalidTrialDays => {
            let trial = TrialInput {
                value: typed.to_owned(),
                error:
                    "A free trial is only for an organization's first subscription, and this one \
                        has subscribed before: leave it empty."
                        .to_owned(),
            };
            render(&state, user, &tenant, None, None, Some(trial)).await
        }
        Err(e) => render(&state, user, &tenant, None, Some(e), None).await,
    }
}

async fn confirm_cancel(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<TenantQuery>,
) -> Response {
    let tenant = match admin_tenant(&user, q.tenant_id.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let sub = match subscriptions::live_for_tenant(&state.db, tenant.as_str()).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/billing").into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let suffix = tenant_suffix(&user, &tenant);
    let end = date_opt(sub.current_period_end, state.settings.billing.timezone);
    let other = match tenants::get(&state.db, &tenant).await {
        Ok(t) => t.and_then(|t| for_other(&user, &t)),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let whose = other
        .as_ref()
        .map_or_else(|| "your".to_owned(), |name| format!("{name}'s"));
    let body = html! {
        section class="card narrow" id="confirm" {
            h1 { "Cancel " (whose) " subscription?" }
            @if let Some(name) = &other {
                (notice(
                    "warn",
                    "acting-as",
                    &format!("You are acting as super admin for {name}: this cancels its subscription, not yours."),
                ))
            }
            p {
                "The subscription stays active until " strong { (end) } " and then ends. Usage until then is \
                 still billed. It can be reactivated any time before that date."
            }
            div class="actions" {
                form method="post" action={ "/billing/cancel" (suffix) } {
                    (html::csrf_field(&user.csrf))
                    button type="submit" class="danger" id="confirm-cancel" {
                        "Yes, cancel " (whose) " subscription at period end"
                    }
                }
                a class="button secondary" id="keep-subscription" href={ "/billing" (suffix) } {
                    "Keep " (whose) " subscription"
                }
            }
        }
    };
    let label = user.label();
    super::html_response(
        StatusCode::OK,
        html::page(&user.chrome("Cancel subscription", &label), body),
    )
}

#[derive(Deserialize)]
struct NoFields {}

/// Runs an admin action on the page's tenant; on success back to the page with `done`, else the page
/// with the error.
async fn act<F, Fut>(
    state: &AppState,
    q: TenantQuery,
    posted: Posted<NoFields>,
    done: &str,
    f: F,
) -> Response
where
    F: FnOnce(AppState, crate::auth::Caller, TenantId) -> Fut,
    Fut: std::future::Future<Output = Result<subscriptions::SubscriptionRow, ApiError>>,
{
    let user = &posted.user;
    let tenant = match admin_tenant(user, q.tenant_id.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match f(state.clone(), user.caller.clone(), tenant.clone()).await {
        Ok(_) => {
            let suffix = tenant_suffix(user, &tenant);
            let sep = if suffix.is_empty() { "?" } else { "&" };
            Redirect::to(&format!("/billing{suffix}{sep}done={done}")).into_response()
        }
        Err(e) => render(state, user, &tenant, None, Some(e), None).await,
    }
}

async fn cancel(
    State(state): State<AppState>,
    Query(q): Query<TenantQuery>,
    posted: Posted<NoFields>,
) -> Response {
    act(&state, q, posted, "canceled", |s, c, t| async move {
        cancellation::cancel_subscription(&s, &c, &t)
            .await
            .map_err(ApiError::from)
    })
    .await
}

async fn reactivate(
    State(state): State<AppState>,
    Query(q): Query<TenantQuery>,
    posted: Posted<NoFields>,
) -> Response {
    act(&state, q, posted, "reactivated", |s, c, t| async move {
        cancellation::reactivate_subscription(&s, &c, &t)
            .await
            .map_err(ApiError::from)
    })
    .await
}

async fn portal(
    State(state): State<AppState>,
    Query(q): Query<TenantQuery>,
    posted: Posted<NoFields>,
) -> Response {
    let user = &posted.user;
    let tenant = match admin_tenant(user, q.tenant_id.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let suffix = tenant_suffix(user, &tenant);
    let sep = if suffix.is_empty() { "?" } else { "&" };
    let return_url = format!(
        "{}/billing{suffix}{sep}done=portal",
        state.settings.http.public_base_url
    );
    match portal::portal_session(&state, &tenant, &return_url)
        .await
        .map_err(ApiError::from)
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => render(&state, user, &tenant, None, Some(e), None).await,
    }
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
