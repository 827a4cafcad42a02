//! The billing page's actions: subscribe, cancel (with its confirmation), reactivate, the portal.

use super::*;
use crate::db::subscriptions;
use crate::domain::TenantId;
use crate::http::error::ApiError;
use crate::http::error::ErrorCode;
use crate::http::web::html::{self, date_opt, notice};
use crate::http::web::session::{require, PageUser, Posted};
use crate::state::AppState;
use crate::subscriptions::{cancellation, checkout, portal};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

/// The tenant an admin action applies to; members are refused: only organization admins (and super
/// admins) act on billing.
pub(super) fn admin_tenant(user: &PageUser, requested: Option<&str>) -> Result<TenantId, Response> {
    require(
        user,
        user.caller.role.manages_tenant(),
        "Only an organization admin can change billing.",
    )?;
    user.tenant(requested)
}

#[derive(Deserialize)]
pub(super) struct TenantQuery {
    tenant_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CheckoutForm {
    #[serde(default)]
    trial_days: String,
}

pub(super) async fn checkout(
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

pub(super) async fn confirm_cancel(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<TenantQuery>,
) -> Response {
    let tenant = match admin_tenant(&user, q.tenant_id.as_deref()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (org, sub) = match crate::tenants::with_live_subscription(&state.db, &tenant).await {
        Ok((org, Some(s))) => (org, s),
        Ok((_, None)) => return Redirect::to("/billing").into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let suffix = tenant_suffix(&user, &tenant);
    let end = date_opt(sub.current_period_end, state.settings.billing.timezone);
    let other = org.and_then(|t| for_other(&user, &t));
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
    crate::http::web::html_response(
        StatusCode::OK,
        html::page(&user.chrome("Cancel subscription", &label), body),
    )
}

#[derive(Deserialize)]
pub(super) struct NoFields {}

/// Runs an admin action on the page's tenant; on success back to the page with `done`, else the page
/// with the error.
pub(super) async fn act<F, Fut>(
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

pub(super) async fn cancel(
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

pub(super) async fn reactivate(
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

pub(super) async fn portal(
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
