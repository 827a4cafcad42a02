//! `/admin/billing`: the super admin's revenue page: billing problems to act on (only when there are
//! any), figures, charts, organizations with their payment flags and the demo toggle, the monthly runs
//! with the form that starts one, the payment attempts the service made itself, and the audit log. Behind it: each run's page
//! (`/admin/billing/runs/{run_id}`), the failed payments behind the KPI, and the confirmation steps of a
//! live run and of the demo toggle.

use crate::auth::Role;
use crate::http::web::html;
use crate::http::web::session::{require, PageUser};
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

mod attempts;
mod demo;
mod failed_payments;
mod page;
mod runs;

use demo::{confirm_demo, set_demo};
use failed_payments::failed_payments_page;
use page::show;
use runs::{run_page, start_run};

const RUNS_SHOWN: i64 = 12;
const AUDIT_SHOWN: i64 = 30;
const ATTEMPTS_SHOWN: i64 = 20;
/// Seconds between reloads of a page that shows a running run (a meta refresh: the CSP allows no script).
const REFRESH_SECS: u32 = 3;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/billing", get(show))
        .route(
            "/admin/billing/tenants/{tenant_id}/demo",
            get(confirm_demo).post(set_demo),
        )
        .route("/admin/billing/runs", post(start_run))
        .route("/admin/billing/runs/{run_id}", get(run_page))
        .route("/admin/billing/failed-payments", get(failed_payments_page))
}

fn require_super_admin(user: &PageUser) -> Result<(), Response> {
    require(
        user,
        user.caller.role == Role::SuperAdmin,
        "This page is for the platform's super admins.",
    )
}

/// An error page of the admin pages: a heading that says what did not happen, what to fix, and the way
/// back to the admin page (not the tenant page the generic error page links).
fn admin_error(user: &PageUser, status: StatusCode, heading: &str, message: &str) -> Response {
    let body = html! {
        div class="card narrow" id="admin-error" {
            h1 { (heading) }
            p id="admin-error-message" { (message) }
            p { a href="/admin/billing" id="back-to-admin" { "Back to the admin page" } }
        }
    };
    admin_page(user, status, heading, None, body)
}

fn admin_page(
    user: &PageUser,
    status: StatusCode,
    title: &str,
    refresh: Option<u32>,
    body: Markup,
) -> Response {
    let label = user.label();
    crate::http::web::html_response(
        status,
        html::page_refreshing(&user.chrome(title, &label), refresh, body),
    )
}

/// `?tenant_id=` or a path segment: the id, percent-encoded.
fn encoded(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
