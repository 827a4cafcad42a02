//! `/billing`: a tenant's plan, subscription, usage, upcoming charges and invoices, with the admin's
//! actions (subscribe, cancel with confirmation, reactivate, payment methods). Every action calls the same
//! functions as the JSON API.

use super::html::{self, badge, count, date, date_opt, money, notice};
use super::session::{error_page, require, PageUser, Posted};
use crate::dashboard::{self, Dashboard};
use crate::db::{subscriptions, tenants};
use crate::domain::TenantId;
use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::stripe::SubscriptionStatus;
use crate::subscriptions::plan::{PLAN_AMOUNT_CENTS, PLAN_NAME};
use crate::subscriptions::{cancellation, checkout, portal};
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
    render(&state, &user, &tenant, done, None).await
}

/// The whole page, with an optional notice (after an action) or error (an action that failed).
async fn render(
    state: &AppState,
    user: &PageUser,
    tenant_id: &TenantId,
    done: Option<(&str, &str)>,
    error: Option<ApiError>,
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
        Err(e) => return e.into_response(),
    };
    let tz = state.settings.billing.timezone;
    let admin = user.caller.role.manages_tenant();
    let suffix = tenant_suffix(user, tenant_id);
    let csrf = html::csrf_field(&user.csrf);
    let due = match charges_due(state, &tenant, live.is_some()).await {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };

    let body = html! {
        h1 { "Billing" }
        p class="sub" { (tenant.name) " " span class="muted" { "· " (tenant.subdomain) } }
        @if let Some(e) = &error {
            (notice("error", "action-error", &e.detail))
        }
        @if let Some((kind, text)) = done {
            (notice(kind, "done", text))
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
                    (subscription_card(sub, tz, admin, &suffix, &csrf))
                }
                _ => { (plan_card(state, &tenant, admin, &suffix, &csrf)) }
            }
            (usage_card(state, &dash, due))
        }
        (invoices_card(state, &dash))
    };

    let label = user.label();
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    super::html_response(status, html::page(&user.chrome("Billing", &label), body))
}

fn subscription_card(
    sub: &subscriptions::SubscriptionRow,
    tz: chrono_tz::Tz,
    admin: bool,
    suffix: &str,
    csrf: &Markup,
) -> Markup {
    let period_end = date_opt(sub.current_period_end, tz);
    html! {
        section class="card" id="subscription" aria-labelledby="subscription-h" {
            h2 id="subscription-h" { "Your subscription" }
            p { strong { (PLAN_NAME) } " " span id="subscription-status" { (badge(&sub.status)) } }
            dl class="facts" {
                dt { "Price" }
                dd { (money(sub.amount_cents)) " / month" }
                @if SubscriptionStatus::parse(&sub.status) == SubscriptionStatus::Trialing {
                    dt { "Trial ends" }
                    dd id="trial-end" { (date_opt(sub.trial_end, tz)) }
                }
                @if sub.cancel_at_period_end {
                    dt { "Ends on" }
                    dd { (period_end) }
                } @else {
                    dt { "Next renewal" }
                    dd id="next-renewal" { (period_end) }
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
            @if SubscriptionStatus::parse(&sub.status) == SubscriptionStatus::PastDue {
                (notice(
                    "error",
                    "past-due",
                    "The last payment failed. Update your payment method to keep the subscription.",
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
                            button type="submit" id="reactivate" { "Reactivate subscription" }
                        }
                    } @else {
                        a class="button danger-outline" id="cancel-subscription"
                            href={ "/billing/cancel" (suffix) } {
                            "Cancel subscription"
                        }
                    }
                }
            }
        }
    }
}

fn plan_card(
    state: &AppState,
    tenant: &tenants::Tenant,
    admin: bool,
    suffix: &str,
    csrf: &Markup,
) -> Markup {
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
                form method="post" action={ "/billing/checkout" (suffix) } {
                    (csrf)
                    div class="field" {
                        label for="trial-days" { "Free trial (days, optional)" }
                        input type="number" id="trial-days" name="trial_days" min="0" max="730"
                            inputmode="numeric" placeholder="0";
                        div class="hint" { "No charge until the trial ends. Usage during the trial is free." }
                    }
                    button type="submit" id="subscribe" {
                        "Subscribe · " (money(PLAN_AMOUNT_CENTS)) " / month"
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

/// When the usage shown under upcoming charges is invoiced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChargesDue {
    /// The run on the 1st bills it: the tenant has a subscription (in any state, canceled too).
    FirstOfMonth,
    /// The run skips a tenant without a subscription; its usage waits for one, it is never dropped.
    OnceSubscribed,
    /// A demo account: exempt.
    Never,
}

/// As the monthly run decides: a tenant is billed when it has a Stripe customer and a subscription.
async fn charges_due(
    state: &AppState,
    tenant: &tenants::Tenant,
    live: bool,
) -> Result<ChargesDue, sqlx::Error> {
    if tenant.is_demo {
        return Ok(ChargesDue::Never);
    }
    if live {
        return Ok(ChargesDue::FirstOfMonth);
    }
    let customer = crate::db::customers::customer_of(&state.db, &tenant.id).await?;
    let subscribed = customer.is_some()
        && !subscriptions::for_tenant(&state.db, &tenant.id)
            .await?
            .is_empty();
    Ok(if subscribed {
        ChargesDue::FirstOfMonth
    } else {
        ChargesDue::OnceSubscribed
    })
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
    let (total_label, hint) = match due {
        ChargesDue::FirstOfMonth => (
            "Total so far",
            "Billed on the first of next month, on a separate invoice from the subscription.",
        ),
        ChargesDue::OnceSubscribed => (
            "Total, billed once you subscribe",
            "Your organization has no subscription, so this usage is not invoiced on the 1st. It is kept, \
             not dropped: it is billed once you subscribe, on the first usage invoice after that.",
        ),
        ChargesDue::Never => (
            "Total so far",
            "Demo accounts are exempt from usage charges.",
        ),
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
                                    "Earlier usage (" (late.period) "): " (count(late.voice_words_count))
                                    " words, " (count(late.call_count)) " calls"
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
            p class="hint" id="upcoming-when" { (hint) }
        }
    }
}

fn invoices_card(state: &AppState, d: &Dashboard) -> Markup {
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
                                th { "Period" }
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
                                @let link = i
                                    .hosted_invoice_url
                                    .as_deref()
                                    .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
                                tr {
                                    td { (date_opt(i.period_start, tz)) " – " (date_opt(i.period_end, tz)) }
                                    td { (if what.is_empty() { "Subscription" } else { &what }) }
                                    td class="num" { (money(i.amount_due_cents)) }
                                    td { (badge(&i.status)) }
                                    td {
                                        @if let Some(u) = link {
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
    let trial = posted.form.trial_days.trim();
    let trial_days = if trial.is_empty() {
        None
    } else {
        match trial.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                let e = ApiError::unprocessable(
                    ErrorCode::InvalidTrialDays,
                    "Free trial: give a whole number of days from 0 to 730, or leave it empty.",
                );
                return render(&state, user, &tenant, None, Some(e)).await;
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
        Err(e) => render(&state, user, &tenant, None, Some(e)).await,
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
    let body = html! {
        section class="card narrow" id="confirm" {
            h1 { "Cancel your subscription?" }
            p {
                "The subscription stays active until " strong { (end) } " and then ends. Usage until then is \
                 still billed. You can reactivate it any time before that date."
            }
            div class="actions" {
                form method="post" action={ "/billing/cancel" (suffix) } {
                    (html::csrf_field(&user.csrf))
                    button type="submit" class="danger" id="confirm-cancel" { "Yes, cancel at period end" }
                }
                a class="button secondary" id="keep-subscription" href={ "/billing" (suffix) } {
                    "Keep my subscription"
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
        Err(e) => render(state, user, &tenant, None, Some(e)).await,
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
        Err(e) => render(&state, user, &tenant, None, Some(e)).await,
    }
}
