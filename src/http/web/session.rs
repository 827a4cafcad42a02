//! The session guard of the pages: the `__Host-` cookie naming a `web_sessions` row, the CSRF and origin
//! checks, and the extractors (`PageUser`, `Posted`) every page handler takes.
//!
//! - The cookie is `__Host-` prefixed: `Secure`, `Path=/` and no `Domain`, so a sibling subdomain (a
//!   tenant's) cannot plant or overwrite it. It is `SameSite=Lax`: Stripe sends the browser back from
//!   Checkout and the portal with a top-level GET from its own site, which a `Strict` cookie would not
//!   survive. Lax still withholds it from cross-site POSTs.
//! - Every state-changing form carries a token derived from the session (an HMAC of the cookie's id with
//!   `JWT_SECRET`), and `Origin`/`Referer`, when the browser sends them, must name this service.
//! - A page reached without a live session sends the browser to `/sign-in?next=<where it was>` (with
//!   `expired=1` when the session had expired, so the page says so); signing in comes back there. `next`
//!   is only ever a path on this site.

use super::html::{self, Chrome};
use crate::auth::jwt::{Claims, Scope};
use crate::auth::{Caller, Role};
use crate::db::web_sessions;
use crate::domain::TenantId;
use crate::http::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use hmac::{Hmac, Mac};
use maud::html;
use serde::de::DeserializeOwned;
use sha2::Sha256;

/// The session cookie. `__Host-` makes the browser refuse it unless it is `Secure`, `Path=/` and has no
/// `Domain`: a page on another subdomain can neither set it for us nor shadow it.
///
/// `Secure` does not break the local demo over plain http: browsers count `http://localhost` and
/// `http://127.0.0.1` as secure contexts (Chromium and Firefox keep and send `Secure` cookies there), and
/// the demo serves on loopback, where the cookie never crosses a network. On any other plain-http host the
/// browser drops the cookie and sign-in does not stick: a session is never carried over cleartext.
pub const COOKIE: &str = "__Host-billing_session";
/// How long the cookie and the row outlive an expired session: a person coming back within this time is
/// told that the session expired, rather than only asked to sign in. Rows older than that are pruned.
pub(super) const EXPIRED_KEPT_SECS: i64 = 7 * 24 * 3600;

/// The CSRF token of a session: an HMAC of its cookie's id, so it needs no storage and dies with the
/// session.
pub fn csrf_token(state: &AppState, session: &str) -> String {
    hex::encode(csrf_mac(state, session).finalize().into_bytes())
}

fn csrf_mac(state: &AppState, session: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.jwt_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"csrf\0");
    mac.update(session.as_bytes());
    mac
}

fn csrf_ok(state: &AppState, session: &str, given: &str) -> bool {
    hex::decode(given).is_ok_and(|bytes| csrf_mac(state, session).verify_slice(&bytes).is_ok())
}

/// Where a request says it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provenance {
    /// `Origin` (or else `Referer`) names this service.
    Here,
    /// Another site.
    Elsewhere,
    /// Neither header was sent.
    Unsaid,
}

fn provenance(headers: &HeaderMap, state: &AppState) -> Provenance {
    let verdict = |here: bool| {
        if here {
            Provenance::Here
        } else {
            Provenance::Elsewhere
        }
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return verdict(
            origin
                .to_str()
                .is_ok_and(|o| origin_is_here(o, headers, state)),
        );
    }
    if let Some(referer) = headers.get(header::REFERER) {
        return verdict(
            referer
                .to_str()
                .ok()
                .and_then(origin_of)
                .is_some_and(|o| origin_is_here(&o, headers, state)),
        );
    }
    Provenance::Unsaid
}

/// Whether `origin` is `PUBLIC_BASE_URL`'s, or the one the request's `Host` names.
fn origin_is_here(origin: &str, headers: &HeaderMap, state: &AppState) -> bool {
    let public = origin_of(&state.settings.http.public_base_url);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    public.as_deref() == Some(origin)
        || host.is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(h)
        })
}

/// Whether `Origin` (or else `Referer`) names this service; true when the browser sent neither (a form
/// of a signed-in page also carries its CSRF token).
pub fn same_origin(headers: &HeaderMap, state: &AppState) -> bool {
    provenance(headers, state) != Provenance::Elsewhere
}

/// Why a sign-in that does not come from this site is refused, or `None` when it does.
pub(super) fn foreign_sign_in(headers: &HeaderMap, state: &AppState) -> Option<&'static str> {
    match provenance(headers, state) {
        Provenance::Here => None,
        Provenance::Elsewhere => Some(
            "This sign-in was sent from another site, so it was refused. Sign in on this site's sign-in page.",
        ),
        Provenance::Unsaid => Some(
            "This sign-in did not say which page sent it (no Origin or Referer header), so it was refused. \
             Sign in on this site's sign-in page.",
        ),
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// Whether `next` may be sent back to after signing in: a path on this site, and nothing a browser could
/// read as another site (`//host`, `/\host`, a scheme, control characters it would strip), nor the sign-in
/// routes themselves.
pub fn safe_next(next: &str) -> bool {
    next.len() <= 2048
        && next.starts_with('/')
        && !next.starts_with("//")
        // Printable ASCII without the backslash: browsers read `\` as `/` and drop tabs and newlines, so
        // `/\evil.example` or `/<TAB>/evil.example` would become `//evil.example`.
        && next.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'\\')
        && !["/sign-in", "/auth/", "/dev/"]
            .iter()
            .any(|p| next.starts_with(p))
}

/// The page to come back to after signing in: the page itself for a GET; for a form, the page it was
/// sent from (its own address is an action, not a page).
fn return_path(parts: &Parts, state: &AppState) -> Option<String> {
    let path = if parts.method == Method::GET || parts.method == Method::HEAD {
        parts.uri.path_and_query().map(|pq| pq.as_str().to_owned())
    } else {
        let referer = parts.headers.get(header::REFERER)?.to_str().ok()?;
        let origin = origin_of(referer)?;
        if !origin_is_here(&origin, &parts.headers, state) {
            return None;
        }
        let rest = referer[origin.len()..].split('#').next().unwrap_or("");
        Some(if rest.is_empty() { "/" } else { rest }.to_owned())
    };
    path.filter(|p| safe_next(p))
}

/// `/sign-in`, with what it should say and where to come back to.
fn sign_in_location(next: Option<&str>, expired: bool) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if expired {
        query.append_pair("expired", "1");
    }
    if let Some(next) = next.filter(|n| safe_next(n)) {
        query.append_pair("next", next);
    }
    let query = query.finish();
    if query.is_empty() {
        "/sign-in".to_owned()
    } else {
        format!("/sign-in?{query}")
    }
}

pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// What the database keeps of a session id: an HMAC of it keyed by `JWT_SECRET`, so that reading the
/// table opens no session, and a new `JWT_SECRET` ends every session as it ends every token.
pub(super) fn id_hash(state: &AppState, session: &str) -> String {
    id_hash_with(state.jwt_secret.expose().as_bytes(), session)
}

fn id_hash_with(secret: &[u8], session: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"web-session\0");
    mac.update(session.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub(super) fn set_cookie(session: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .expect("a base64url id is a valid header value")
}

pub(super) fn clear_cookie() -> HeaderValue {
    // The attributes a `__Host-` cookie must carry, or the browser ignores the deletion too.
    HeaderValue::from_static(
        "__Host-billing_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
    )
}

/// A redirect to the sign-in page that also drops the cookie.
fn to_sign_in(next: Option<&str>, expired: bool, clear: bool) -> Response {
    let mut r = Redirect::to(&sign_in_location(next, expired)).into_response();
    if clear {
        r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    }
    r
}

/// A signed-in user of the pages: who the session's token named, and the session's CSRF token.
#[derive(Clone)]
pub struct PageUser {
    pub caller: Caller,
    pub csrf: String,
    pub(super) session: String,
}

impl PageUser {
    /// The label shown in the header.
    pub fn label(&self) -> String {
        let who = self
            .caller
            .claims
            .email
            .clone()
            .unwrap_or_else(|| self.caller.claims.sub.clone());
        format!("{who} · {}", self.caller.role.as_str().replace('_', " "))
    }

    pub fn chrome<'a>(&'a self, title: &'a str, label: &'a str) -> Chrome<'a> {
        Chrome {
            title,
            user: Some((label, &self.csrf)),
            admin_link: self.caller.role == Role::SuperAdmin,
        }
    }

    /// The tenant a page acts on: the token's own, or for a super admin `?tenant_id=`.
    pub fn tenant(&self, requested: Option<&str>) -> Result<TenantId, Response> {
        let raw = match requested {
            Some(t) if self.caller.role == Role::SuperAdmin => t,
            _ => self.caller.claims.tenant_id.as_str(),
        };
        TenantId::parse(raw)
            .map_err(|_| error_page(self, StatusCode::NOT_FOUND, "No such organization."))
    }
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let back = return_path(parts, state);
        let Some(session) = cookie_value(&parts.headers, COOKIE) else {
            return Err(to_sign_in(back.as_deref(), false, false));
        };
        let stored = web_sessions::find(&state.db, &id_hash(state, session))
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        // Signed out, pruned, or never ours: the cookie is dropped and the person signs in.
        let Some(stored) = stored else {
            return Err(to_sign_in(back.as_deref(), false, true));
        };
        if Utc::now() > stored.expires_at {
            return Err(to_sign_in(back.as_deref(), true, true));
        }
        // JWT_AUDIENCE / JWT_ISSUER as set now: a session opened before they were set, with a token
        // minted for another purpose, ends with them as the token would.
        let scope = Scope {
            audience: stored.audience,
            issuer: stored.issuer,
        };
        if !state.settings.auth.jwt_expected.admits(&scope) {
            return Err(to_sign_in(back.as_deref(), false, true));
        }
        let claims = Claims {
            sub: stored.sub,
            tenant_id: stored.tenant_id,
            role: stored.role,
            exp: stored.token_exp,
            email: stored.email,
        };
        let role = claims.role().filter(|r| r.reads_tenant()).ok_or_else(|| {
            (
                StatusCode::FORBIDDEN,
                "This role cannot use the billing pages.",
            )
                .into_response()
        })?;
        Ok(PageUser {
            caller: Caller { claims, role },
            csrf: csrf_token(state, session),
            session: session.to_owned(),
        })
    }
}

/// A state-changing form from a signed-in user: `Origin`/`Referer` and the CSRF field are checked before
/// the handler runs; a failed check is a 403 and nothing happens.
pub struct Posted<T> {
    pub user: PageUser,
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let user = PageUser::from_request_parts(&mut parts, state).await?;
        let refused = |why: &str| error_page(&user, StatusCode::FORBIDDEN, why);
        if !same_origin(&parts.headers, state) {
            return Err(refused(
                "This form was sent from another site, so it was refused.",
            ));
        }
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let given = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !csrf_ok(state, &user.session, &given) {
            return Err(refused(
                "This form has expired or did not come from this page. Go back, reload and try again.",
            ));
        }
        let Form(form) = Form::<T>::from_request(
            Request::from_parts(parts, axum::body::Body::from(bytes)),
            state,
        )
        .await
        .map_err(IntoResponse::into_response)?;
        Ok(Posted { user, form })
    }
}

/// `Ok` when `allowed`, else the 403 page with `message`.
pub fn require(user: &PageUser, allowed: bool, message: &str) -> Result<(), Response> {
    if allowed {
        Ok(())
    } else {
        Err(error_page(user, StatusCode::FORBIDDEN, message))
    }
}

/// A page that says what went wrong, in the layout.
pub fn error_page(user: &PageUser, status: StatusCode, message: &str) -> Response {
    let label = user.label();
    // Back to the page this person works from: a super admin's is the admin page.
    let (back, back_label) = match home_of(user.caller.role) {
        "/admin/billing" => ("/admin/billing", "Back to the admin page"),
        _ => ("/billing", "Back to billing"),
    };
    let body = html! {
        div class="card narrow" {
            h1 { (status.canonical_reason().unwrap_or("Error")) }
            p { (message) }
            p { a href=(back) id="error-back" { (back_label) } }
        }
    };
    super::html_response(
        status,
        html::page(&user.chrome("Something went wrong", &label), body),
    )
}

/// Where a role lands after signing in.
pub(super) fn home_of(role: Role) -> &'static str {
    if role == Role::SuperAdmin {
        "/admin/billing"
    } else {
        "/billing"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn origins_are_scheme_and_authority() {
        assert_eq!(
            origin_of("https://billing.example.com/billing?x=1").as_deref(),
            Some("https://billing.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8000").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(origin_of("nonsense"), None);
    }

    #[test]
    fn reads_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-billing_session=abc_DEF-1; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc_DEF-1"));
        assert_eq!(cookie_value(&h, "missing"), None);
        // The cookie without its prefix is not ours: a subdomain could have set it.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("billing_session=abc"),
        );
        assert_eq!(cookie_value(&h, COOKIE), None);
    }

    #[test]
    fn next_is_only_a_path_on_this_site() {
        for ok in ["/billing", "/billing?tenant_id=acme", "/admin/billing", "/"] {
            assert!(safe_next(ok), "{ok}");
        }
        for bad in [
            "",
            "billing",
            "//evil.example",
            "//evil.example/billing",
            "https://evil.example",
            "http://127.0.0.1/billing",
            "/\\evil.example",
            "/\\/evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "javascript:alert(1)",
            "/billing\u{0}",
            "/bill\u{e9}",
            "/sign-in?next=/billing",
            "/auth/logout",
            "/dev/sign-in",
        ] {
            assert!(!safe_next(bad), "{bad:?}");
        }
        assert!(!safe_next(&format!("/{}", "a".repeat(2048))));
    }

    #[test]
    fn the_sign_in_location_keeps_only_a_safe_next() {
        assert_eq!(sign_in_location(None, false), "/sign-in");
        assert_eq!(
            sign_in_location(Some("/billing?tenant_id=acme"), true),
            "/sign-in?expired=1&next=%2Fbilling%3Ftenant_id%3Dacme"
        );
        assert_eq!(sign_in_location(Some("//evil.example"), false), "/sign-in");
    }

    #[test]
    fn session_ids_are_stored_keyed_by_the_secret() {
        let h = id_hash_with(b"secret", "abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, id_hash_with(b"secret", "abc"));
        assert_ne!(h, id_hash_with(b"secret", "abd"));
        assert_ne!(h, id_hash_with(b"rotated", "abc"), "a new secret ends them");
        assert_ne!(h, hex::encode(Sha256::digest(b"abc")));
    }
}
