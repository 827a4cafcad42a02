//! Cross-origin access to the API from browsers: only the exact origins of `CORS_ALLOWED_ORIGINS`.
//!
//! With no origins configured there is no CORS layer at all, so browsers keep the API same-origin. The API
//! authenticates with bearer tokens, never cookies, so credentials are never allowed cross-origin (the
//! pages' session cookie is `SameSite=Lax` and stays on this site).

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The platform's pages send their organization in this header on every call (we act on the token's
/// `tenant_id` and read nothing from it), so a browser's preflight must allow it.
const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// The layer for `origins`, or `None` when the list is empty (same-origin only).
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let allowed = parse(origins);
    if allowed.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, X_TENANT_ID])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// The allowed origins as header values (the configuration checked them already).
fn parse(origins: &[String]) -> Vec<HeaderValue> {
    origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect()
}

/// The allowed origins, for [`strip_for_strangers`].
#[derive(Clone)]
pub struct Allowed(Arc<[HeaderValue]>);

impl Allowed {
    pub fn new(origins: &[String]) -> Allowed {
        Allowed(parse(origins).into())
    }
}

/// Keeps every `Access-Control-*` header away from origins that are not allowed: `CorsLayer` answers any
/// preflight with the allowed methods and headers, and a stranger should learn nothing, not even those.
pub async fn strip_for_strangers(
    State(allowed): State<Allowed>,
    req: Request,
    next: Next,
) -> Response {
    let stranger = req
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| !allowed.0.contains(o));
    let mut response = next.run(req).await;
    if stranger {
        let names: Vec<HeaderName> = response
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in names {
            response.headers_mut().remove(name);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origins_no_layer() {
        assert!(layer(&[]).is_none());
        assert!(layer(&["https://app.example.com".into()]).is_some());
    }
}
