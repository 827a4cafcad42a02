//! The demo toggle: its confirmation page and the switch.

use super::*;
use crate::http::error::ApiError;
use crate::http::web::html::{self, notice};
use crate::http::web::session::{PageUser, Posted};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct DemoQuery {
    is_demo: Option<String>,
}

pub(super) fn parse_is_demo(v: Option<&str>) -> Option<bool> {
    match v {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// The demo toggle's confirmation: what switching does to this organization's billing, then one button.
pub(super) async fn confirm_demo(
    State(state): State<AppState>,
    user: PageUser,
    Path(tenant_id): Path<String>,
    Query(q): Query<DemoQuery>,
) -> Response {
    if let Err(r) = require_super_admin(&user) {
        return r;
    }
    let Some(is_demo) = parse_is_demo(q.is_demo.as_deref()) else {
        return admin_error(
            &user,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Demo status not changed",
            "Choose demo on or off: is_demo=true or is_demo=false.",
        );
    };
    let not_found = || {
        admin_error(
            &user,
            StatusCode::NOT_FOUND,
            "Demo status not changed",
            "No such organization.",
        )
    };
    let Ok(id) = crate::domain::TenantId::parse(&tenant_id) else {
        return not_found();
    };
    let loaded = crate::tenants::with_live_subscription(&state.db, &id).await;
    let (tenant, live) = match loaded {
        Ok((Some(t), live)) => (t, live),
        Ok((None, _)) => return not_found(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (heading, button) = if is_demo {
        (format!("Make {} a demo account?", tenant.name), "Make demo")
    } else {
        (format!("End demo for {}?", tenant.name), "End demo")
    };
    let path = format!("/admin/billing/tenants/{}/demo", encoded(&tenant.id));
    let csrf = html::csrf_field(&user.csrf);
    let body = html! {
        div class="card narrow" id="demo-confirmation" {
            h1 { (heading) }
            @if tenant.is_demo == is_demo {
                (notice("info", "demo-unchanged", &format!(
                    "{} is {} a demo account: confirming changes nothing.",
                    tenant.name,
                    if is_demo { "already" } else { "not" }
                )))
            }
            ul id="demo-consequences" {
                @if is_demo {
                    li { "The monthly run skips it, and its usage while it is a demo account is never billed." }
                    @match &live {
                        Some(sub) => li {
                            "Stripe stops collecting its subscription " code { (sub.stripe_subscription_id) }
                            ": renewal invoices are voided until demo is switched off."
                        },
                        None => li { "It has no live subscription, so nothing changes in Stripe." },
                    }
                    li { "Its people see “This is a demo account and is exempt from billing charges.”" }
                } @else {
                    li { "It is billed normally again: usage from now on is invoiced by the monthly run." }
                    @match &live {
                        Some(sub) => li {
                            "Stripe collects its subscription " code { (sub.stripe_subscription_id) }
                            " again from the next renewal."
                        },
                        None => li { "It has no live subscription: it pays once it subscribes." },
                    }
                }
            }
            form method="post" action=(path) class="actions" {
                (csrf)
                input type="hidden" name="is_demo" value=(if is_demo { "true" } else { "false" });
                button type="submit" id="demo-confirm" { (button) }
                a class="button secondary" id="demo-cancel"
                    href={ "/admin/billing#org-" (tenant.id) } { "Cancel" }
            }
        }
    };
    admin_page(&user, StatusCode::OK, &heading, None, body)
}

#[derive(Deserialize)]
pub(super) struct DemoForm {
    is_demo: String,
}

pub(super) async fn set_demo(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    posted: Posted<DemoForm>,
) -> Response {
    let user = &posted.user;
    if let Err(r) = require_super_admin(user) {
        return r;
    }
    let Some(is_demo) = parse_is_demo(Some(posted.form.is_demo.as_str())) else {
        return admin_error(
            user,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Demo status not changed",
            "Choose demo on or off.",
        );
    };
    match crate::subscriptions::demo::set_demo(&state, &user.caller, &tenant_id, is_demo)
        .await
        .map_err(ApiError::from)
    {
        Ok((tenant, _)) => {
            let done = if is_demo { "demo_on" } else { "demo_off" };
            let tenant = encoded(&tenant.id);
            Redirect::to(&format!("/admin/billing?done={done}&tenant={tenant}")).into_response()
        }
        Err(e) => admin_error(user, e.status, "Demo status not changed", &e.detail),
    }
}
