//! The tenant's subscription: plans, checkout, portal, cancel and reactivate, demo status, invoices.

use crate::db::invoices;
use crate::domain::time::rfc3339;
use crate::http::auth::{SuperAdmin, TenantAdmin, TenantUser};
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::subscriptions::cancellation::{cancel_subscription, reactivate_subscription};
use crate::subscriptions::checkout::start_checkout;
use crate::subscriptions::demo::set_demo;
use crate::subscriptions::plan::{plan_features, PLAN_AMOUNT_CENTS, PLAN_DESCRIPTION, PLAN_NAME};
use crate::subscriptions::portal::portal_session;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(plans))
        .routes(routes!(create_checkout_session))
        .routes(routes!(start_subscription))
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
        plans: plan_list(&state),
    })
}

/// The plans on offer; their `id`s are what `start-subscription` takes.
fn plan_list(state: &AppState) -> Vec<Plan> {
    vec![Plan {
        id: "monthly",
        name: PLAN_NAME,
        description: PLAN_DESCRIPTION,
        price_id: state.settings.stripe.monthly_price_id.clone(),
        amount_cents: PLAN_AMOUNT_CENTS,
        currency: "usd",
        interval: "month",
        features: plan_features(state),
    }]
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
    #[serde(default, deserialize_with = "crate::domain::json::whole_number")]
    #[schema(minimum = 0, maximum = 730)]
    trial_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct CheckoutSessionCreated {
    /// Stripe Checkout's hosted page: send the browser there.
    checkout_url: String,
    session_id: String,
}

impl From<crate::subscriptions::checkout::CheckoutStarted> for CheckoutSessionCreated {
    fn from(started: crate::subscriptions::checkout::CheckoutStarted) -> CheckoutSessionCreated {
        CheckoutSessionCreated {
            checkout_url: started.checkout_url,
            session_id: started.session_id,
        }
    }
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
    Ok(Json(started.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartSubscriptionRequest {
    /// A plan's `id` from `GET /api/billing/subscription-plans`.
    #[schema(example = "monthly")]
    plan_id: String,
    /// Where Stripe sends the browser after payment: an absolute http(s) URL (default:
    /// `{PUBLIC_BASE_URL}/billing?checkout=success`).
    #[schema(
        pattern = r"^https?://[!-~]+$",
        min_length = 9,
        max_length = 2048,
        example = "https://app.example.com/billing?checkout=success"
    )]
    success_url: Option<String>,
    /// Where Stripe sends the browser when the person goes back (default:
    /// `{PUBLIC_BASE_URL}/billing?checkout=cancel`).
    #[schema(
        pattern = r"^https?://[!-~]+$",
        min_length = 9,
        max_length = 2048,
        example = "https://app.example.com/billing?checkout=cancel"
    )]
    cancel_url: Option<String>,
}

/// Start a Stripe Checkout session for a plan: what the platform's plans component's Subscribe button
/// calls.
///
/// Roles: org_admin, admin; super_admin for any tenant with `?tenant_id=`. The rules of
/// `create-checkout-session` apply (no trial is asked for here).
#[utoipa::path(post, path = "/api/billing/start-subscription", tag = "billing",
    security(("bearer" = [])),
    params(TenantParam),
    request_body = StartSubscriptionRequest,
    responses(
        (status = 200, description = "The session to send the browser to.", body = CheckoutSessionCreated),
        (status = 403, description = "A demo tenant cannot subscribe (`demo_account`), or the role may not manage billing (`forbidden`).", body = ApiError),
        (status = 404, description = "The tenant is not registered (`tenant_not_found`).", body = ApiError),
        (status = 409, description = "The tenant already has a live subscription (`subscription_exists`), or another checkout of the tenant is being opened at this moment (`checkout_in_progress`).", body = ApiError),
        (status = 422, description = "`plan_id` names no plan (`unknown_plan`), or a URL, `tenant_id` or the body is invalid (`invalid_url`, `invalid_tenant_id`, `invalid_json`).", body = ApiError),
        (status = 503, description = "Stripe is not configured or not reachable (`stripe_not_configured`, `stripe_unavailable`).", body = ApiError),
    ))]
async fn start_subscription(
    State(state): State<AppState>,
    admin: TenantAdmin,
    ApiJson(body): ApiJson<StartSubscriptionRequest>,
) -> ApiResult<Json<CheckoutSessionCreated>> {
    let plans = plan_list(&state);
    if !plans.iter().any(|p| p.id == body.plan_id) {
        let ids: Vec<&str> = plans.iter().map(|p| p.id).collect();
        return Err(ApiError::unprocessable(
            ErrorCode::UnknownPlan,
            format!(
                "plan_id: there is no such plan; use an id that GET /api/billing/subscription-plans lists ({}).",
                ids.join(", ")
            ),
        ));
    }
    // The one plan is the monthly price `start_checkout` subscribes to.
    let base = &state.settings.http.public_base_url;
    let success_url = body
        .success_url
        .unwrap_or_else(|| format!("{base}/billing?checkout=success"));
    let cancel_url = body
        .cancel_url
        .unwrap_or_else(|| format!("{base}/billing?checkout=cancel"));
    let started = start_checkout(
        &state,
        &admin.tenant_id,
        &admin.caller,
        &success_url,
        &cancel_url,
        None,
    )
    .await?;
    Ok(Json(started.into()))
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
        .unwrap_or_else(|| format!("{}/billing", state.settings.http.public_base_url));
    let portal_url = portal_session(&state, &admin.tenant_id, &return_url).await?;
    Ok(Json(PortalSessionCreated { portal_url }))
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
                ErrorCode::InvalidIsDemo,
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
                    ErrorCode::InvalidLimit,
                    "limit: give a whole number from 1 to 100.",
                )
            })?,
    };
    let rows = crate::dashboard::invoices(&state.db, &user.tenant_id, limit).await?;
    Ok(Json(InvoiceList {
        invoices: rows.iter().map(Invoice::from).collect(),
    }))
}
