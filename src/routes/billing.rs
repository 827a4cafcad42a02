//! The tenant's subscription: plans, checkout, portal, cancel and reactivate, demo status, invoices.

use crate::auth::{Caller, SuperAdmin, TenantAdmin, TenantUser};
use crate::db::{audit, invoices, subscriptions, tenants};
use crate::domain::time::{now, rfc3339};
use crate::domain::TenantId;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;
use crate::stripe::{self, Params};
use crate::subscriptions::{customer, sync};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The one plan: $299.00 a month.
pub const PLAN_AMOUNT_CENTS: i64 = 29_900;
pub const PLAN_NAME: &str = "Thanotopolis Platform Subscription";
pub const PLAN_DESCRIPTION: &str =
    "Monthly subscription for Thanotopolis multi-agent platform with web and telephony access";
/// Stripe allows at most two years of trial.
const MAX_TRIAL_DAYS: u32 = 730;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/billing/subscription-plans", get(plans))
        .route(
            "/api/billing/create-checkout-session",
            post(create_checkout_session),
        )
        .route("/api/billing/customer-portal", get(customer_portal))
        .route("/api/billing/cancel-subscription", post(cancel))
        .route("/api/billing/reactivate-subscription", post(reactivate))
        .route(
            "/api/billing/set-demo-status/{tenant_id}",
            post(set_demo_status),
        )
        .route("/api/billing/invoices", get(list_invoices))
}

/// What the plan includes, said with the configured rates.
pub fn plan_features(state: &AppState) -> Vec<String> {
    let s = &state.settings;
    vec![
        "Web and telephony voice agents for your whole organization".to_owned(),
        format!(
            "Voice usage (speech-to-text plus text-to-speech): {} per 1,000 words, billed monthly",
            crate::domain::Cents(s.voice_price_cents_per_1000_words)
        ),
        format!(
            "Phone calls: {} per call plus the call's voice usage, billed monthly",
            crate::domain::Cents(s.call_price_cents)
        ),
        "Manage cards, invoices and cancellation in Stripe's customer portal".to_owned(),
    ]
}

async fn plans(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "plans": [{
            "id": "monthly",
            "name": PLAN_NAME,
            "description": PLAN_DESCRIPTION,
            "price_id": state.settings.stripe_monthly_price_id,
            "amount_cents": PLAN_AMOUNT_CENTS,
            "currency": "usd",
            "interval": "month",
            "features": plan_features(&state),
        }]
    }))
}

pub async fn tenant_or_404(state: &AppState, id: &TenantId) -> ApiResult<tenants::Tenant> {
    tenants::get(&state.db, id).await?.ok_or_else(|| {
        ApiError::not_found(
            "tenant_not_found",
            format!("No tenant has the id {:?}.", id.as_str()),
        )
    })
}

/// An absolute http(s) URL, or a 422 that names the field.
fn check_url(field: &str, url: &str) -> ApiResult<()> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url.len() > "https://".len()
        && !url.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_url",
            format!("{field}: give an absolute http(s) URL of at most 2,048 characters."),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutRequest {
    success_url: String,
    cancel_url: String,
    #[serde(default)]
    trial_days: Option<u32>,
}

async fn create_checkout_session(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> ApiResult<Json<Value>> {
    let started = start_checkout(
        &state,
        &admin.tenant_id,
        admin.caller.claims.email.as_deref(),
        &body.success_url,
        &body.cancel_url,
        body.trial_days,
    )
    .await?;
    Ok(Json(
        json!({"checkout_url": started.checkout_url, "session_id": started.session_id}),
    ))
}

/// A Stripe Checkout session to send the browser to.
pub struct CheckoutStarted {
    pub checkout_url: String,
    pub session_id: String,
}

/// Opens a Stripe Checkout session for the tenant's subscription (the API route and the billing page).
pub async fn start_checkout(
    state: &AppState,
    tenant_id: &TenantId,
    email: Option<&str>,
    success_url: &str,
    cancel_url: &str,
    trial_days: Option<u32>,
) -> ApiResult<CheckoutStarted> {
    check_url("success_url", success_url)?;
    check_url("cancel_url", cancel_url)?;
    let trial_days = trial_days.unwrap_or(0);
    if trial_days > MAX_TRIAL_DAYS {
        return Err(ApiError::unprocessable(
            "invalid_trial_days",
            format!("trial_days: give a whole number from 0 to {MAX_TRIAL_DAYS}."),
        ));
    }
    let tenant = tenant_or_404(state, tenant_id).await?;
    if tenant.is_demo {
        return Err(ApiError::forbidden(
            "This is a demo account and is exempt from billing charges; it cannot subscribe.",
        )
        .with_code("demo_account"));
    }
    if let Some(live) = subscriptions::live_for_tenant(&state.db, &tenant.id).await? {
        return Err(ApiError::conflict(
            "subscription_exists",
            format!(
                "The organization already has a subscription ({}, {}); manage it in the customer portal.",
                live.stripe_subscription_id, live.status
            ),
        ));
    }
    let price_id = state.settings.stripe_monthly_price_id.clone().ok_or_else(|| {
        ApiError::unavailable(
            "The monthly price is not configured: the operator must run `thanotopolis-billing stripe setup` \
             and set STRIPE_MONTHLY_PRICE_ID.",
            anyhow::anyhow!("STRIPE_MONTHLY_PRICE_ID is not set"),
        )
        .with_code("stripe_not_configured")
    })?;
    let customer_id = customer::get_or_create(state, &tenant, email).await?;

    let mut params = Params::new()
        .set("mode", "subscription")
        .set("customer", &customer_id)
        .set("line_items[0][price]", &price_id)
        .set("line_items[0][quantity]", 1)
        .set("success_url", success_url)
        .set("cancel_url", cancel_url)
        .set("client_reference_id", &tenant.id)
        .metadata("tenant_id", &tenant.id)
        .set("subscription_data[metadata][tenant_id]", &tenant.id);
    if trial_days > 0 {
        params = params.set("subscription_data[trial_period_days]", trial_days);
    }
    for (i, method) in state.settings.stripe_payment_methods.iter().enumerate() {
        params = params.set(format!("payment_method_types[{i}]"), method);
    }
    // The same request within the hour gives the same session (a double click opens one checkout).
    let digest = hex::encode(&Sha256::digest(params.encode().as_bytes())[..8]);
    let key = format!(
        "checkout:{}:{digest}:{}",
        tenant.id,
        now().timestamp() / 3600
    );
    let session: stripe::CheckoutSession = state
        .stripe
        .post("checkout/sessions", &params, &key)
        .await?;
    let url = session
        .url
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("checkout session without url")))?;
    tracing::info!(tenant_id = %tenant.id, session = %session.id, trial_days, "checkout session created");
    Ok(CheckoutStarted {
        checkout_url: url,
        session_id: session.id,
    })
}

#[derive(Deserialize)]
struct PortalQuery {
    return_url: Option<String>,
}

async fn customer_portal(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Query(q): Query<PortalQuery>,
) -> ApiResult<Json<Value>> {
    let return_url = q
        .return_url
        .unwrap_or_else(|| format!("{}/billing", state.settings.public_base_url));
    let portal_url = portal_session(&state, &admin.tenant_id, &return_url).await?;
    Ok(Json(json!({ "portal_url": portal_url })))
}

/// Opens a customer-portal session for the tenant and returns its URL.
pub async fn portal_session(
    state: &AppState,
    tenant_id: &TenantId,
    return_url: &str,
) -> ApiResult<String> {
    check_url("return_url", return_url)?;
    let tenant = tenant_or_404(state, tenant_id).await?;
    let customer_id = crate::db::customers::customer_of(&state.db, &tenant.id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "no_stripe_customer",
                "No Stripe customer found: the organization must complete checkout first.",
            )
        })?;
    let params = Params::new()
        .set("customer", &customer_id)
        .set("return_url", return_url)
        .set_opt(
            "configuration",
            state.settings.stripe_portal_configuration_id.as_deref(),
        );
    // A portal session is a short-lived login link; one per minute and return URL is plenty.
    let digest = hex::encode(&Sha256::digest(params.encode().as_bytes())[..8]);
    let key = format!("portal:{}:{digest}:{}", tenant.id, now().timestamp() / 60);
    let session: stripe::PortalSession = state
        .stripe
        .post("billing_portal/sessions", &params, &key)
        .await?;
    Ok(session.url)
}

/// Sets `cancel_at_period_end` on the tenant's subscription and stores Stripe's answer.
async fn set_cancel_at_period_end(
    state: &AppState,
    sub: &subscriptions::SubscriptionRow,
    cancel: bool,
) -> ApiResult<subscriptions::SubscriptionRow> {
    // Keyed by the state it changes from, so cancel → reactivate → cancel are three distinct writes.
    let key = format!(
        "subscription:{}:cancel_at_period_end={cancel}:from={}",
        sub.stripe_subscription_id,
        sub.stripe_updated_at.timestamp_micros()
    );
    let params = Params::new().set("cancel_at_period_end", cancel);
    let updated: stripe::Subscription = state
        .stripe
        .post(
            &format!("subscriptions/{}", sub.stripe_subscription_id),
            &params,
            &key,
        )
        .await?;
    sync::subscription(state, &updated, now())
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("updated subscription has no tenant")))
}

async fn cancel(State(state): State<AppState>, admin: TenantAdmin) -> ApiResult<Json<Value>> {
    let sub = cancel_subscription(&state, &admin.caller, &admin.tenant_id).await?;
    let period_end = sub.current_period_end.map(rfc3339);
    Ok(Json(json!({
        "message": format!(
            "The subscription will be canceled at the end of the current billing period{}; it stays active until then and can be reactivated.",
            period_end.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
        ),
        "status": sub.status,
        "cancel_at_period_end": true,
        "period_end": period_end,
        "subscription_id": sub.stripe_subscription_id,
    })))
}

/// Sets the tenant's live subscription to cancel at the end of its period (idempotent), audited.
pub async fn cancel_subscription(
    state: &AppState,
    caller: &Caller,
    tenant_id: &TenantId,
) -> ApiResult<subscriptions::SubscriptionRow> {
    let sub = subscriptions::live_for_tenant(&state.db, tenant_id.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "no_active_subscription",
                "The organization has no active subscription to cancel.",
            )
        })?;
    let sub = if sub.cancel_at_period_end {
        sub
    } else {
        set_cancel_at_period_end(state, &sub, true).await?
    };
    audit::record(
        &state.db,
        &caller.actor(),
        "subscription.cancel",
        Some(tenant_id.as_str()),
        &sub.stripe_subscription_id,
    )
    .await?;
    Ok(sub)
}

async fn reactivate(State(state): State<AppState>, admin: TenantAdmin) -> ApiResult<Json<Value>> {
    let sub = reactivate_subscription(&state, &admin.caller, &admin.tenant_id).await?;
    Ok(Json(json!({
        "message": "The subscription is reactivated and will renew at the end of the current period.",
        "status": sub.status,
        "cancel_at_period_end": false,
        "period_end": sub.current_period_end.map(rfc3339),
        "subscription_id": sub.stripe_subscription_id,
    })))
}

/// Undoes a pending cancellation of the tenant's subscription, audited.
pub async fn reactivate_subscription(
    state: &AppState,
    caller: &Caller,
    tenant_id: &TenantId,
) -> ApiResult<subscriptions::SubscriptionRow> {
    let sub = subscriptions::live_for_tenant(&state.db, tenant_id.as_str())
        .await?
        .filter(|s| s.cancel_at_period_end)
        .ok_or_else(|| {
            ApiError::not_found(
                "no_pending_cancellation",
                "The organization has no subscription pending cancellation.",
            )
        })?;
    let sub = set_cancel_at_period_end(state, &sub, false).await?;
    audit::record(
        &state.db,
        &caller.actor(),
        "subscription.reactivate",
        Some(tenant_id.as_str()),
        &sub.stripe_subscription_id,
    )
    .await?;
    Ok(sub)
}

#[derive(Deserialize)]
struct DemoQuery {
    is_demo: Option<String>,
}

async fn set_demo_status(
    State(state): State<AppState>,
    SuperAdmin(caller): SuperAdmin,
    Path(tenant_id): Path<String>,
    Query(q): Query<DemoQuery>,
) -> ApiResult<Json<Value>> {
    let is_demo = match q.is_demo.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_is_demo",
                "is_demo: add ?is_demo=true or ?is_demo=false to the URL.",
            ))
        }
    };
    let (tenant, message) = set_demo(&state, &caller, &tenant_id, is_demo).await?;
    Ok(Json(
        json!({"tenant_id": tenant.id, "is_demo": tenant.is_demo, "message": message}),
    ))
}

/// Sets a tenant's demo status, audited; returns the tenant and a sentence saying what changed.
pub async fn set_demo(
    state: &AppState,
    caller: &Caller,
    tenant_id: &str,
    is_demo: bool,
) -> ApiResult<(tenants::Tenant, String)> {
    let id = TenantId::parse(tenant_id)
        .map_err(|e| ApiError::not_found("tenant_not_found", format!("No such tenant: {e}.")))?;
    let tenant = tenants::set_demo(&state.db, &id, is_demo)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "tenant_not_found",
                format!("No tenant has the id {tenant_id:?}."),
            )
        })?;
    audit::record(
        &state.db,
        &caller.actor(),
        if is_demo {
            "tenant.demo_on"
        } else {
            "tenant.demo_off"
        },
        Some(id.as_str()),
        &tenant.name,
    )
    .await?;
    tracing::info!(tenant_id = %id, is_demo, "demo status set");
    let message = if is_demo {
        format!(
            "{} is now a demo account: exempt from billing charges.",
            tenant.name
        )
    } else {
        format!(
            "{} is no longer a demo account: it will be billed normally.",
            tenant.name
        )
    };
    Ok((tenant, message))
}

#[derive(Deserialize)]
struct InvoiceQuery {
    limit: Option<String>,
}

/// An invoice as the API shows it.
pub fn invoice_json(i: &invoices::InvoiceRow) -> Value {
    json!({
        "stripe_invoice_id": i.stripe_invoice_id,
        "number": i.number,
        "status": i.status,
        "billing_period": i.billing_period,
        "period_start": i.period_start.map(rfc3339),
        "period_end": i.period_end.map(rfc3339),
        "amount_due_cents": i.amount_due_cents,
        "amount_paid_cents": i.amount_paid_cents,
        "currency": i.currency,
        "hosted_invoice_url": i.hosted_invoice_url,
        "invoice_pdf": i.invoice_pdf,
        "paid_at": i.paid_at.map(rfc3339),
        "created_at": rfc3339(i.stripe_created_at),
        "lines": i.lines,
    })
}

async fn list_invoices(
    State(state): State<AppState>,
    user: TenantUser,
    Query(q): Query<InvoiceQuery>,
) -> ApiResult<Json<Value>> {
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_limit",
                    "limit: give a whole number from 1 to 100.",
                )
            })?,
    };
    let rows = invoices::for_tenant(&state.db, user.tenant_id.as_str(), limit).await?;
    Ok(Json(
        json!({"invoices": rows.iter().map(invoice_json).collect::<Vec<_>>()}),
    ))
}
