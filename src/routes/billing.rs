//! The tenant's subscription: plans, checkout, portal, cancel and reactivate, demo status, invoices.

use crate::auth::{Caller, SuperAdmin, TenantAdmin, TenantUser};
use crate::db::{audit, checkout_sessions, invoices, subscriptions, tenants};
use crate::domain::time::{now, rfc3339};
use crate::domain::TenantId;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::stripe;
use crate::subscriptions::{customer, sync};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The one plan: $299.00 a month.
pub const PLAN_AMOUNT_CENTS: i64 = 29_900;
pub const PLAN_NAME: &str = "Thanotopolis Platform Subscription";
pub const PLAN_DESCRIPTION: &str =
    "Monthly subscription for Thanotopolis multi-agent platform with web and telephony access";
/// Stripe allows at most two years of trial: what a super admin may grant.
const MAX_GRANTED_TRIAL_DAYS: u32 = 730;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(plans))
        .routes(routes!(create_checkout_session))
        .routes(routes!(customer_portal))
        .routes(routes!(cancel))
        .routes(routes!(reactivate))
        .routes(routes!(set_demo_status))
        .routes(routes!(list_invoices))
}

/// The `?tenant_id=` every tenant route takes (read by the auth extractors, not by the handlers).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Only documents the parameter.
pub struct TenantParam {
    /// super_admin only: act on this tenant instead of the token's `tenant_id`.
    #[param(pattern = r"^[!-~]{1,64}$")]
    tenant_id: Option<String>,
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

#[derive(Serialize, ToSchema)]
struct PlanList {
    plans: Vec<Plan>,
}

#[derive(Serialize, ToSchema)]
struct Plan {
    #[schema(example = "monthly")]
    id: &'static str,
    name: &'static str,
    description: &'static str,
    /// The Stripe price (null until the operator configures it).
    price_id: Option<String>,
    #[schema(example = 29900)]
    amount_cents: i64,
    #[schema(example = "usd")]
    currency: &'static str,
    #[schema(example = "month")]
    interval: &'static str,
    features: Vec<String>,
}

/// The subscription plans: the one $299.00 monthly plan and what it includes.
///
/// Anyone.
#[utoipa::path(get, path = "/api/billing/subscription-plans", tag = "billing",
    responses((status = 200, description = "The plans.", body = PlanList)))]
async fn plans(State(state): State<AppState>) -> Json<PlanList> {
    Json(PlanList {
        plans: vec![Plan {
            id: "monthly",
            name: PLAN_NAME,
            description: PLAN_DESCRIPTION,
            price_id: state.settings.stripe_monthly_price_id.clone(),
            amount_cents: PLAN_AMOUNT_CENTS,
            currency: "usd",
            interval: "month",
            features: plan_features(&state),
        }],
    })
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
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_url",
            format!("{field}: give an absolute http(s) URL of at most 2,048 characters."),
        ))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CheckoutRequest {
    /// Where Stripe sends the browser after payment: an absolute http(s) URL.
    #[schema(
        pattern = r"^https?://[!-~]+$",
        min_length = 9,
        max_length = 2048,
        example = "https://app.example.com/billing?checkout=success"
    )]
    success_url: String,
    /// Where Stripe sends the browser when the person goes back: an absolute http(s) URL.
    #[schema(
        pattern = r"^https?://[!-~]+$",
        min_length = 9,
        max_length = 2048,
        example = "https://app.example.com/billing"
    )]
    cancel_url: String,
    /// Days of free trial: up to `MAX_TRIAL_DAYS` (default 30) for an organization admin, up to 730 for
    /// a super admin; only for a tenant's first subscription.
    #[serde(default, deserialize_with = "crate::error::whole_number")]
    #[schema(minimum = 0, maximum = 730)]
    trial_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct CheckoutSessionCreated {
    /// Stripe Checkout's hosted page: send the browser there.
    checkout_url: String,
    session_id: String,
}

/// Start a Stripe Checkout session for the monthly subscription.
///
/// Roles: org_admin, admin; super_admin for any tenant with `?tenant_id=`.
#[utoipa::path(post, path = "/api/billing/create-checkout-session", tag = "billing",
    security(("bearer" = [])),
    params(TenantParam),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "The session to send the browser to.", body = CheckoutSessionCreated),
        (status = 403, description = "A demo tenant cannot subscribe (`demo_account`), or the role may not manage billing (`forbidden`).", body = ApiError),
        (status = 404, description = "The tenant is not registered (`tenant_not_found`).", body = ApiError),
        (status = 409, description = "The tenant already has a live subscription (`subscription_exists`), or another checkout of the tenant is being opened at this moment (`checkout_in_progress`).", body = ApiError),
        (status = 422, description = "A URL, `trial_days` or `tenant_id` is invalid (`invalid_url`, `invalid_trial_days`, `invalid_tenant_id`, `invalid_json`): `trial_days` above `MAX_TRIAL_DAYS` (730 for a super admin), or a trial for a tenant that has subscribed before.", body = ApiError),
        (status = 503, description = "Stripe is not configured or not reachable (`stripe_not_configured`, `stripe_unavailable`).", body = ApiError),
    ))]
async fn create_checkout_session(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> ApiResult<Json<CheckoutSessionCreated>> {
    let started = start_checkout(
        &state,
        &admin.tenant_id,
        &admin.caller,
        &body.success_url,
        &body.cancel_url,
        body.trial_days,
    )
    .await?;
    Ok(Json(CheckoutSessionCreated {
        checkout_url: started.checkout_url,
        session_id: started.session_id,
    }))
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
    caller: &Caller,
    success_url: &str,
    cancel_url: &str,
    trial_days: Option<u32>,
) -> ApiResult<CheckoutStarted> {
    check_url("success_url", success_url)?;
    check_url("cancel_url", cancel_url)?;
    let email = caller.claims.email.as_deref();
    let trial_days = trial_days.unwrap_or(0);
    // Trials are policy, not a customer's choice: an organization admin may ask for up to
    // MAX_TRIAL_DAYS, a super admin may grant up to Stripe's two years.
    let (max_trial, who) = if caller.role == crate::auth::Role::SuperAdmin {
        (MAX_GRANTED_TRIAL_DAYS, "a super admin may grant")
    } else {
        (
            state.settings.max_trial_days.min(MAX_GRANTED_TRIAL_DAYS),
            "an organization admin may ask for",
        )
    };
    if trial_days > max_trial {
        return Err(ApiError::unprocessable(
            "invalid_trial_days",
            format!("trial_days: {who} at most {max_trial} days of free trial; give a whole number from 0 to {max_trial}."),
        ));
    }
    let tenant = tenant_or_404(state, tenant_id).await?;
    if tenant.is_demo {
        return Err(ApiError::forbidden(
            "This is a demo account and is exempt from billing charges; it cannot subscribe.",
        )
        .with_code("demo_account"));
    }
    let earlier = subscriptions::for_tenant(&state.db, &tenant.id).await?;
    if let Some(live) = earlier.iter().find(|s| s.is_live()) {
        return Err(ApiError::conflict(
            "subscription_exists",
            format!(
                "The organization already has a subscription ({}, {}); manage it in the customer portal.",
                live.stripe_subscription_id, live.status
            ),
        ));
    }
    // A trial frees the usage inside it: only a first subscription gets one, or re-subscribing with a
    // trial would be a way to make earlier usage and fees free.
    if trial_days > 0 && !earlier.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_trial_days",
            "trial_days: only an organization's first subscription has a free trial, and this organization has subscribed before; leave trial_days out or set it to 0.",
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
    let request_hash = hex::encode(
        &Sha256::digest(
            format!("{customer_id}|{price_id}|{success_url}|{cancel_url}|{trial_days}").as_bytes(),
        )[..8],
    );
    let checkout = stripe::NewCheckout {
        customer: &customer_id,
        tenant: &tenant.id,
        price: &price_id,
        success_url,
        cancel_url,
        trial_days,
        payment_methods: &state.settings.stripe_payment_methods,
    };
    // One checkout of a tenant at a time, across replicas: the open sessions are read and replaced
    // under the lock, so two tabs cannot both see none open and both open one.
    let _lock =
        crate::db::locks::lock(&state.db, &state.locks, &format!("checkout:{}", tenant.id)).await?;
    let mut attempt = 0;
    let session = loop {
        // At most one open session per tenant: the same request reuses it (a double click, a
        // reload), another request expires it first (two tabs), so two sessions can never both be
        // completed.
        for open in checkout_sessions::open_for(&state.db, &tenant.id).await? {
            if !state.stripe.checkout_is_open(&open.session_id).await? {
                checkout_sessions::close(&state.db, &open.session_id).await?;
            } else if open.request_hash == request_hash {
                return Ok(CheckoutStarted {
                    checkout_url: open.url,
                    session_id: open.session_id,
                });
            } else {
                state.stripe.expire_checkout(&open.session_id).await?;
                checkout_sessions::close(&state.db, &open.session_id).await?;
                tracing::info!(tenant_id = %tenant.id, session = %open.session_id, "older checkout session expired");
            }
        }
        // Numbered by the sessions opened so far: requests racing here send the same key, so Stripe
        // gives them the same session (same request) or refuses all but one (another request); the
        // refused one waits for the winner's session to be recorded, expires it and goes on.
        let opened = checkout_sessions::count(&state.db, &tenant.id).await?;
        let key = format!("checkout:{}:session-{}", tenant.id, opened + 1);
        match state.stripe.open_checkout(&checkout, &key).await {
            Ok(s) if s.url.is_some() && s.status.as_deref() != Some("expired") => break s,
            Ok(s) => {
                // A replayed session another request has since expired: record it, and go round.
                checkout_sessions::record(&state.db, &tenant.id, &s.id, s.url.as_deref().unwrap_or(""), "").await?;
                checkout_sessions::close(&state.db, &s.id).await?;
            }
            Err(e) if e.kind() == Some("idempotency_error") && attempt < 20 => {}
            Err(e) if e.kind() == Some("idempotency_error") => {
                return Err(ApiError::conflict(
                    "checkout_in_progress",
                    "Another checkout for this organization is being opened at this moment; reload the page to continue with it.",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
    };
    let url = session
        .url
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("checkout session without url")))?;
    checkout_sessions::record(&state.db, &tenant.id, &session.id, &url, &request_hash).await?;
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

#[derive(Serialize, ToSchema)]
struct PortalSessionCreated {
    /// Stripe's customer portal: send the browser there.
    portal_url: String,
}

/// Open a Stripe customer-portal session: cards, invoices, cancellation.
///
/// Roles: org_admin, admin; super_admin for any tenant with `?tenant_id=`.
#[utoipa::path(get, path = "/api/billing/customer-portal", tag = "billing",
    security(("bearer" = [])),
    params(
        ("return_url" = Option<String>, Query, pattern = r"^https?://[!-~]+$", min_length = 9, max_length = 2048, description = "Where the portal's back link goes: an absolute http(s) URL (default: the billing page)."),
        TenantParam,
    ),
    responses(
        (status = 200, description = "The portal session.", body = PortalSessionCreated),
        (status = 404, description = "The tenant is not registered or has no Stripe customer yet (`tenant_not_found`, `no_stripe_customer`).", body = ApiError),
        (status = 422, description = "`return_url` or `tenant_id` is invalid (`invalid_url`, `invalid_tenant_id`).", body = ApiError),
        (status = 503, description = "Stripe is not configured or not reachable (`stripe_not_configured`, `stripe_unavailable`).", body = ApiError),
    ))]
async fn customer_portal(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiQuery(q): ApiQuery<PortalQuery>,
) -> ApiResult<Json<PortalSessionCreated>> {
    let return_url = q
        .return_url
        .unwrap_or_else(|| format!("{}/billing", state.settings.public_base_url));
    let portal_url = portal_session(&state, &admin.tenant_id, &return_url).await?;
    Ok(Json(PortalSessionCreated { portal_url }))
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
    let configuration = state.settings.stripe_portal_configuration_id.as_deref();
    // A portal session is a short-lived login link; one per minute and return URL is plenty.
    let digest = hex::encode(
        &Sha256::digest(format!("{customer_id}|{return_url}|{configuration:?}").as_bytes())[..8],
    );
    let key = format!("portal:{}:{digest}:{}", tenant.id, now().timestamp() / 60);
    let session = state
        .stripe
        .open_portal(&customer_id, return_url, configuration, &key)
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
    let updated = state
        .stripe
        .set_cancel_at_period_end(&sub.stripe_subscription_id, cancel, &key)
        .await?;
    sync::subscription(state, &updated, now())
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("updated subscription has no tenant")))
}

/// The subscription after a cancel or a reactivation.
#[derive(Serialize, ToSchema)]
struct SubscriptionChanged {
    message: String,
    /// Stripe's status of the subscription, e.g. `active` or `trialing`.
    #[schema(example = "active")]
    status: String,
    cancel_at_period_end: bool,
    /// The end of the current period: when a pending cancellation takes effect.
    #[schema(format = DateTime)]
    period_end: Option<String>,
    subscription_id: String,
}

/// Cancel the subscription at the end of the current period (it stays active until then).
///
/// Roles: org_admin, admin; super_admin for any tenant with `?tenant_id=`. Repeating it changes nothing.
#[utoipa::path(post, path = "/api/billing/cancel-subscription", tag = "billing",
    security(("bearer" = [])),
    params(TenantParam),
    responses(
        (status = 200, description = "Set to cancel at period end; `cancel_at_period_end` is true.", body = SubscriptionChanged),
        (status = 404, description = "No active subscription (`no_active_subscription`).", body = ApiError),
        (status = 422, description = "`tenant_id` is invalid (`invalid_tenant_id`).", body = ApiError),
        (status = 503, description = "Stripe is not configured or not reachable (`stripe_not_configured`, `stripe_unavailable`).", body = ApiError),
    ))]
async fn cancel(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> ApiResult<Json<SubscriptionChanged>> {
    let sub = cancel_subscription(&state, &admin.caller, &admin.tenant_id).await?;
    let period_end = sub.current_period_end.map(rfc3339);
    Ok(Json(SubscriptionChanged {
        message: format!(
            "The subscription will be canceled at the end of the current billing period{}; it stays active until then and can be reactivated.",
            period_end.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
        ),
        status: sub.status,
        cancel_at_period_end: true,
        period_end,
        subscription_id: sub.stripe_subscription_id,
    }))
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

/// Undo a pending cancellation: the subscription renews again.
///
/// Roles: org_admin, admin; super_admin for any tenant with `?tenant_id=`.
#[utoipa::path(post, path = "/api/billing/reactivate-subscription", tag = "billing",
    security(("bearer" = [])),
    params(TenantParam),
    responses(
        (status = 200, description = "Reactivated; `cancel_at_period_end` is false.", body = SubscriptionChanged),
        (status = 404, description = "No subscription pending cancellation (`no_pending_cancellation`).", body = ApiError),
        (status = 422, description = "`tenant_id` is invalid (`invalid_tenant_id`).", body = ApiError),
        (status = 503, description = "Stripe is not configured or not reachable (`stripe_not_configured`, `stripe_unavailable`).", body = ApiError),
    ))]
async fn reactivate(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> ApiResult<Json<SubscriptionChanged>> {
    let sub = reactivate_subscription(&state, &admin.caller, &admin.tenant_id).await?;
    Ok(Json(SubscriptionChanged {
        message: "The subscription is reactivated and will renew at the end of the current period."
            .to_owned(),
        status: sub.status,
        cancel_at_period_end: false,
        period_end: sub.current_period_end.map(rfc3339),
        subscription_id: sub.stripe_subscription_id,
    }))
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

#[derive(Serialize, ToSchema)]
struct DemoStatus {
    tenant_id: String,
    is_demo: bool,
    message: String,
}

/// Mark a tenant as a demo account (exempt from billing) or not.
///
/// Roles: super_admin.
#[utoipa::path(post, path = "/api/billing/set-demo-status/{tenant_id}", tag = "admin",
    security(("bearer" = [])),
    params(
        ("tenant_id" = String, Path, pattern = r"^[!-~]{1,64}$", description = "The tenant."),
        ("is_demo" = bool, Query, description = "`true` or `false`."),
    ),
    responses(
        (status = 200, description = "The tenant's demo status now.", body = DemoStatus),
        (status = 404, description = "No such tenant (`tenant_not_found`).", body = ApiError),
        (status = 422, description = "`is_demo` is not `true` or `false` (`invalid_is_demo`).", body = ApiError),
    ))]
async fn set_demo_status(
    State(state): State<AppState>,
    SuperAdmin(caller): SuperAdmin,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DemoQuery>,
) -> ApiResult<Json<DemoStatus>> {
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
    Ok(Json(DemoStatus {
        tenant_id: tenant.id,
        is_demo: tenant.is_demo,
        message,
    }))
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
    tenant_or_404(state, &id).await?;
    // Stripe first: a demo tenant must not be charged there either. Should this fail, nothing has
    // changed yet and the same request can be repeated.
    let collection = set_collection(state, &id, is_demo).await?;
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
    let mut message = if is_demo {
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
    if let Some(sub) = collection {
        message.push_str(&if is_demo {
            format!(" Stripe no longer collects its subscription {sub}: renewal invoices are voided until demo is switched off.")
        } else {
            format!(" Stripe collects its subscription {sub} again from the next renewal.")
        });
    }
    Ok((tenant, message))
}

/// Pauses (demo) or resumes collection on the tenant's live subscription, if it has one; returns its id.
async fn set_collection(
    state: &AppState,
    tenant: &TenantId,
    is_demo: bool,
) -> ApiResult<Option<String>> {
    let Some(sub) = subscriptions::live_for_tenant(&state.db, tenant.as_str()).await? else {
        return Ok(None);
    };
    let current = state
        .stripe
        .subscription(&sub.stripe_subscription_id)
        .await?;
    if current.collection_paused() == is_demo {
        return Ok(Some(sub.stripe_subscription_id));
    }
    let (pause, verb) = if is_demo {
        (stripe::Pause::VoidInvoices, "pause")
    } else {
        (stripe::Pause::Collect, "resume")
    };
    // Keyed by the state it changes from, so demo on, off and on again are three distinct writes.
    let key = format!(
        "subscription:{}:collection:{verb}:from={}",
        sub.stripe_subscription_id,
        sub.stripe_updated_at.timestamp_micros()
    );
    let updated = state
        .stripe
        .set_collection(&sub.stripe_subscription_id, pause, &key)
        .await?;
    sync::subscription(state, &updated, now()).await?;
    tracing::info!(tenant_id = %tenant, subscription = %sub.stripe_subscription_id, is_demo, "collection {verb}d");
    Ok(Some(sub.stripe_subscription_id))
}

#[derive(Deserialize)]
struct InvoiceQuery {
    limit: Option<String>,
}

/// An invoice as the invoices route shows it.
#[derive(Serialize, ToSchema)]
pub struct Invoice {
    stripe_invoice_id: String,
    number: Option<String>,
    /// Stripe's status: `draft`, `open`, `paid`, `void` or `uncollectible`.
    #[schema(example = "paid")]
    status: String,
    /// The usage period a monthly usage invoice bills, YYYY-MM; null on subscription invoices.
    billing_period: Option<String>,
    #[schema(format = DateTime)]
    period_start: Option<String>,
    #[schema(format = DateTime)]
    period_end: Option<String>,
    amount_due_cents: i64,
    amount_paid_cents: i64,
    #[schema(example = "usd")]
    currency: String,
    hosted_invoice_url: Option<String>,
    invoice_pdf: Option<String>,
    #[schema(format = DateTime)]
    paid_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    lines: Vec<invoices::InvoiceLine>,
}

impl From<&invoices::InvoiceRow> for Invoice {
    fn from(i: &invoices::InvoiceRow) -> Invoice {
        Invoice {
            stripe_invoice_id: i.stripe_invoice_id.clone(),
            number: i.number.clone(),
            status: i.status.clone(),
            billing_period: i.billing_period.clone(),
            period_start: i.period_start.map(rfc3339),
            period_end: i.period_end.map(rfc3339),
            amount_due_cents: i.amount_due_cents,
            amount_paid_cents: i.amount_paid_cents,
            currency: i.currency.clone(),
            hosted_invoice_url: i.hosted_invoice_url.clone(),
            invoice_pdf: i.invoice_pdf.clone(),
            paid_at: i.paid_at.map(rfc3339),
            created_at: rfc3339(i.stripe_created_at),
            lines: i.lines.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct InvoiceList {
    invoices: Vec<Invoice>,
}

/// The tenant's invoices, newest first.
///
/// Roles: any role of the tenant (member, user, org_admin, admin); super_admin for any tenant with
/// `?tenant_id=`.
#[utoipa::path(get, path = "/api/billing/invoices", tag = "billing",
    security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "How many, 1 to 100 (default 20)."),
        TenantParam,
    ),
    responses(
        (status = 200, description = "The invoices.", body = InvoiceList),
        (status = 422, description = "`limit` or `tenant_id` is invalid (`invalid_limit`, `invalid_tenant_id`).", body = ApiError),
    ))]
async fn list_invoices(
    State(state): State<AppState>,
    user: TenantUser,
    ApiQuery(q): ApiQuery<InvoiceQuery>,
) -> ApiResult<Json<InvoiceList>> {
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
    Ok(Json(InvoiceList {
        invoices: rows.iter().map(Invoice::from).collect(),
    }))
}
