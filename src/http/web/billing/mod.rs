//! `/billing`: a tenant's plan, subscription, usage, upcoming charges and invoices, with the admin's
//! actions (subscribe, cancel with confirmation, reactivate, payment methods). Every action calls the same
//! functions as the JSON API.

use crate::dashboard::{self, Standing};
use crate::db::{invoices, tenants};
use crate::domain::SubscriptionStatus;
use crate::domain::TenantId;
use crate::http::error::ApiError;
use crate::http::web::html::{self, notice};
use crate::http::web::session::{error_page, PageUser};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

mod actions;
mod cards;

use actions::{cancel, checkout, confirm_cancel, portal, reactivate};
use cards::*;

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

/// The whole page, with an optional notice (after an action) or error (an action that failed).
async fn render(
    state: &AppState,
    user: &PageUser,
    tenant_id: &TenantId,
    done: Option<(&str, &str)>,
    error: Option<ApiError>,
    trial: Option<TrialInput>,
) -> Response {
    let loaded = crate::tenants::with_live_subscription(&state.db, tenant_id).await;
    let (tenant, live) = match loaded {
        Ok(v) => v,
        Err(e) => return ApiError::from(e).into_response(),
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
    let standing = match crate::dashboard::standing(state, tenant_id, live.as_ref()).await {
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
    // The bank waits for the customer on some; the others were declined.
    let (waiting, declined): (Vec<&invoices::FailedPayment>, Vec<&invoices::FailedPayment>) =
        standing.failed.iter().partition(|f| f.action_required);

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
        @if !waiting.is_empty() {
            (action_required_banner(&waiting, &standing, tz))
        }
        @if !declined.is_empty() || (past_due && waiting.is_empty()) {
            (failed_banner(&declined, &standing, tz, admin, &ctx))
        }
        @if !standing.processing.is_empty() {
            (processing_notice(&standing.processing))
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
        (invoices_card(state, &dash, &standing))
    };

    let label = user.label();
    let status = match (&error, &trial) {
        (Some(e), _) => e.status,
        (None, Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        (None, None) => StatusCode::OK,
    };
    crate::http::web::html_response(status, html::page(&user.chrome("Billing", &label), body))
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
