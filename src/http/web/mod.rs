//! The web pages: `/billing` for a tenant's users, `/admin/billing` for super admins, signing in, and
//! `/api/docs`, the API reference.
//!
//! Server-rendered HTML (maud templates) with no script: the forms post back here and every action
//! redirects (303). The pages reuse the JSON API's functions, so both always say and do the same.

// Page helpers fail with the `Response` to send (a redirect or an error page): it is built at most once
// per request, on the way out, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod admin;
mod api_docs;
mod billing;
mod chart;
pub mod html;
pub mod session;
mod sign_in;

use crate::config::Settings;
use crate::state::AppState;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use tower_http::set_header::SetResponseHeaderLayer;

/// The pages, with their security headers; `api_document` is the OpenAPI document `/api/docs` shows.
pub fn router(settings: &Settings, api_document: &'static str) -> Router<AppState> {
    let csp =
        HeaderValue::from_str(&content_security_policy(settings)).expect("the policy is ASCII");
    let headers = [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    let mut router = Router::new()
        .merge(sign_in::router())
        .merge(billing::router())
        .merge(admin::router())
        .merge(api_docs::router(api_document))
        .route("/assets/billing.css", get(css))
        .route("/assets/icon.svg", get(icon));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::overriding(name, value));
    }
    router
}

/// Only our own stylesheet and images; no script at all; forms may go to us and, by their redirects,
/// to Stripe's hosted pages (Checkout and the portal: the simulator's origin when it stands in).
fn content_security_policy(settings: &Settings) -> String {
    let stripe = if settings.stripe.api_base == "https://api.stripe.com" {
        "https://checkout.stripe.com https://billing.stripe.com".to_owned()
    } else {
        settings.stripe.api_base.clone()
    };
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {stripe}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// An HTML response that is never cached (pages show money and account state).
pub fn html_response(status: StatusCode, html: Markup) -> Response {
    // maud's `IntoResponse` sets `text/html; charset=utf-8`.
    (status, [(header::CACHE_CONTROL, "no-store")], html).into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        html::CSS,
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        html::ICON_SVG,
    )
        .into_response()
}
