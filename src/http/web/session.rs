//! Signing in to the pages with the platform's own JWT, the server-side session it opens, and CSRF
//! protection.
//!
//! - `POST /auth/session` (form or JSON `{token, next?}`) verifies the token (signature, `exp`, and `aud` /
//!   `iss` when `JWT_AUDIENCE` / `JWT_ISSUER` are set; the session keeps them and every request checks
//!   them against the settings of the moment) and opens a session: a row in `web_sessions` under an HMAC
//!   of a random id, the id in the cookie. The token never travels in a URL, so it reaches no access log,
//!   history or `Referer`, and it is not kept: the cookie is worth nothing on the API.
//! - A session lasts as long as the token it was opened with. Signing out deletes its row, so the cookie
//!   replayed afterwards opens nothing.
//! - Sign-in is refused unless `Origin` or `Referer` names this service (login CSRF: another site must not
//!   sign a visitor in to an account of its choosing). Browsers send `Origin` on every form POST.
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
use crate::auth::jwt::{self, Claims, JwtError, Scope};
use crate::auth::{Caller, Role};
use crate::db::{tenants, web_sessions};
use crate::domain::TenantId;
use crate::http::error::{ApiError, ErrorCode};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawQuery, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use maud::{html, Markup};
use serde::de::DeserializeOwned;
use serde::Deserialize;
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
const EXPIRED_KEPT_SECS: i64 = 7 * 24 * 3600;
/// How long a dev sign-in lasts.
const DEV_SESSION_SECS: i64 = 8 * 3600;
/// The words a person sees when their session, or the token they pasted, has expired.
pub const EXPIRED_MESSAGE: &str = "Your session expired. Sign in again.";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(sign_in_page))
        .route("/auth/session", post(create_session))
        .route("/auth/logout", post(logout))
        .route("/dev/sign-in", get(dev_sign_in_page).post(dev_sign_in))
}

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

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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
fn id_hash(state: &AppState, session: &str) -> String {
    id_hash_with(state.jwt_secret.expose().as_bytes(), session)
}

fn id_hash_with(secret: &[u8], session: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"web-session\0");
    mac.update(session.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn set_cookie(session: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .expect("a base64url id is a valid header value")
}

fn clear_cookie() -> HeaderValue {
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
    session: String,
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
fn home_of(role: Role) -> &'static str {
    if role == Role::SuperAdmin {
        "/admin/billing"
    } else {
        "/billing"
    }
}

/// The last second a session may end at (9999-12-31T23:59:59Z): both engines store it as written.
const LATEST_END: i64 = 253_402_300_799;

/// Opens a session for verified `claims` and sends the browser on: to `next` when it is a path here, else
/// to the role's home. A session the browser already had is ended first, and sessions expired longer ago
/// than [`EXPIRED_KEPT_SECS`] are pruned, so the table holds only what a cookie can still name.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    claims: &Claims,
    scope: Scope,
    role: Role,
    next: Option<&str>,
) -> Response {
    let now = Utc::now();
    // As long as the token is accepted on the API: its `exp` and the clock-skew leeway.
    let end = claims
        .exp
        .saturating_add(jwt::EXP_LEEWAY_SECS)
        .min(LATEST_END);
    let expires_at = DateTime::from_timestamp(end, 0).unwrap_or(now);
    let session = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let stored = web_sessions::WebSession {
        sub: claims.sub.clone(),
        tenant_id: claims.tenant_id.clone(),
        role: role.as_str().to_owned(),
        email: claims.email.clone(),
        token_exp: claims.exp,
        audience: scope.audience,
        issuer: scope.issuer,
        expires_at,
    };
    let opened = async {
        if let Some(previous) = cookie_value(headers, COOKIE) {
            web_sessions::end(&state.db, &id_hash(state, previous)).await?;
        }
        web_sessions::prune(
            &state.db,
            now - chrono::Duration::seconds(EXPIRED_KEPT_SECS),
        )
        .await?;
        web_sessions::create(&state.db, &id_hash(state, &session), &stored).await
    };
    if let Err(e) = opened.await {
        return ApiError::from(e).into_response();
    }
    warn_if_cookie_cannot_stick(state, headers);
    let max_age = (expires_at - now).num_seconds().max(0) + EXPIRED_KEPT_SECS;
    let to = next.filter(|n| safe_next(n)).unwrap_or(home_of(role));
    let mut r = Redirect::to(to).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&session, max_age));
    r
}

/// Says in the log why sign-in will not stick when the pages are served over plain http to a host that
/// is not loopback: the browser drops the `Secure` cookie there.
fn warn_if_cookie_cannot_stick(state: &AppState, headers: &HeaderMap) {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if state.settings.http.public_base_url.starts_with("http://") && !loopback(host) {
        tracing::warn!(
            host,
            "signed in over plain http at a host that is not loopback: browsers keep the Secure session \
             cookie only over https (or on localhost), so the sign-in will not stick; serve the pages over \
             https and set PUBLIC_BASE_URL to that address"
        );
    }
}

/// Whether a `Host` header names this machine (`localhost`, `127.0.0.1`, `[::1]`, with or without a port).
fn loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What the sign-in page says above its form.
enum Notice<'a> {
    None,
    /// The session (or the token pasted) expired; the detail says more.
    Expired(Option<&'a str>),
    Error(&'a str),
}

fn sign_in_form(
    state: &AppState,
    notice: Notice<'_>,
    next: Option<&str>,
    status: StatusCode,
) -> Response {
    let next = next.filter(|n| safe_next(n));
    let body = html! {
        div class="card narrow" {
            h1 { "Sign in to billing" }
            @if let Notice::Expired(detail) = notice {
                div class="notice warn" id="session-expired" role="alert" {
                    strong { (EXPIRED_MESSAGE) }
                    @if let Some(detail) = detail {
                        br;
                        (detail)
                    }
                }
            }
            p class="sub" {
                "Paste the access token the Thanotopolis platform gave you. It is kept in a secure cookie \
                 for this site only."
            }
            @if let Notice::Error(e) = notice {
                (html::notice("error", "sign-in-error", e))
            }
            form method="post" action="/auth/session" {
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                div class="field" {
                    label for="token" { "Access token" }
                    textarea id="token" name="token" required autocomplete="off" spellcheck="false" {}
                    div class="hint" { "A JSON Web Token: three parts separated by dots." }
                }
                button type="submit" id="sign-in" { "Sign in" }
            }
            @if state.settings.auth.dev_sign_in {
                p class="hint" {
                    "Local demo: "
                    a href="/dev/sign-in" id="dev-sign-in" { "sign in as a demo user" }
                    "."
                }
            }
        }
    };
    let chrome = Chrome {
        title: "Sign in",
        user: None,
        admin_link: false,
    };
    super::html_response(status, html::page(&chrome, body))
}

/// `GET /sign-in[?expired=1][&next=/path]`.
async fn sign_in_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let (mut next, mut expired) = (None, false);
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "next" => next = Some(v.into_owned()),
            "expired" => expired = v == "1",
            _ => {}
        }
    }
    let notice = if expired {
        Notice::Expired(None)
    } else {
        Notice::None
    };
    sign_in_form(&state, notice, next.as_deref(), StatusCode::OK)
}

/// A refused sign-in: the contract's JSON error for a JSON request, else the sign-in page saying why.
fn refused(
    state: &AppState,
    json: bool,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
    expired: bool,
    next: Option<&str>,
) -> Response {
    if json {
        let detail = if expired {
            format!("{EXPIRED_MESSAGE} {message}")
        } else {
            message.to_owned()
        };
        return ApiError::new(status, code, detail).into_response();
    }
    let notice = if expired {
        Notice::Expired(Some(message))
    } else {
        Notice::Error(message)
    };
    sign_in_form(state, notice, next, status)
}

/// Why a sign-in that does not come from this site is refused, or `None` when it does.
fn foreign_sign_in(headers: &HeaderMap, state: &AppState) -> Option<&'static str> {
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

#[derive(Deserialize)]
struct TokenBody {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Signs in with a platform token, from a form or a JSON body.
async fn create_session(State(state): State<AppState>, req: Request) -> Response {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if let Some(why) = foreign_sign_in(req.headers(), &state) {
        return refused(
            &state,
            json,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            why,
            false,
            None,
        );
    }
    let headers = req.headers().clone();
    let body = if json {
        axum::Json::<TokenBody>::from_request(req, &state)
            .await
            .ok()
            .map(|axum::Json(b)| b)
    } else {
        Form::<TokenBody>::from_request(req, &state)
            .await
            .ok()
            .map(|Form(b)| b)
    };
    let Some(body) = body.filter(|b| !b.token.trim().is_empty()) else {
        let (code, message) = if json {
            (
                ErrorCode::InvalidJson,
                r#"Send {"token": "<the platform's access token>"} to sign in."#,
            )
        } else {
            (ErrorCode::InvalidBody, "Paste a token to sign in.")
        };
        return refused(
            &state,
            json,
            StatusCode::BAD_REQUEST,
            code,
            message,
            false,
            None,
        );
    };
    let next = body.next.as_deref();
    let verified = jwt::verify_scoped(
        body.token.trim(),
        state.jwt_secret.expose().as_bytes(),
        Utc::now().timestamp(),
        &state.settings.auth.jwt_expected,
    );
    let unauthorized = |message: &str, expired: bool| {
        refused(
            &state,
            json,
            StatusCode::UNAUTHORIZED,
            ErrorCode::NotAuthenticated,
            message,
            expired,
            next,
        )
    };
    let (claims, scope) = match verified {
        Ok(verified) => verified,
        Err(JwtError::Expired) => {
            return unauthorized(
                "The token you pasted has expired: get a new one from the platform.",
                true,
            )
        }
        Err(JwtError::Audience) => {
            return unauthorized(
                "This token was issued for another service, not for billing. Get a billing token from the platform.",
                false,
            )
        }
        Err(_) => {
            return unauthorized(
                "This token was not accepted. Check that you pasted all of it.",
                false,
            )
        }
    };
    match claims.role().filter(|r| r.reads_tenant()) {
        Some(role) => signed_in(&state, &headers, &claims, scope, role, next).await,
        None => refused(
            &state,
            json,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "This token's role cannot use the billing pages.",
            false,
            next,
        ),
    }
}

#[derive(Deserialize)]
struct Empty {}

/// Ends the session where it is stored, not only in this browser: the cookie replayed afterwards opens
/// nothing.
async fn logout(State(state): State<AppState>, posted: Posted<Empty>) -> Response {
    if let Err(e) = web_sessions::end(&state.db, &id_hash(&state, &posted.user.session)).await {
        return ApiError::from(e).into_response();
    }
    let mut r = Redirect::to("/sign-in").into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    r
}

/// The local demo's sign-in: one button per tenant and role, tokens minted here with `JWT_SECRET`.
/// Only when `Settings::dev_sign_in` is on (`serve --stripe-sim`); otherwise the route does not exist.
async fn dev_sign_in_page(State(state): State<AppState>) -> Response {
    if !state.settings.auth.dev_sign_in {
        return StatusCode::NOT_FOUND.into_response();
    }
    let list = match tenants::list(&state.db).await {
        Ok(l) => l,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let body = html! {
        div class="card" {
            h1 { "Demo sign-in" }
            p class="sub" {
                "For the local demo only: sign in as an organization's admin or member, or as the \
                 platform's super admin."
            }
            p { (dev_button("platform", "super_admin", "Sign in as super admin", "dev-super-admin")) }
            @if list.is_empty() {
                p class="muted" {
                    "No organizations yet: add one with "
                    code { "thanotopolis-billing tenants add" }
                    "."
                }
            } @else {
                div class="table-scroll" {
                    table {
                        thead { tr { th { "Organization" } th { "Subdomain" } th {} } }
                        tbody {
                            @for t in &list {
                                tr {
                                    td {
                                        (t.name)
                                        @if t.is_demo {
                                            " "
                                            span class="badge info" { "demo" }
                                        }
                                    }
                                    td { (t.subdomain) }
                                    td {
                                        div class="actions" {
                                            @let (admin, member) =
                                                (format!("dev-admin-{}", t.id), format!("dev-member-{}", t.id));
                                            (dev_button(&t.id, "org_admin", "Admin", &admin))
                                            (dev_button(&t.id, "member", "Member", &member))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let chrome = Chrome {
        title: "Demo sign-in",
        user: None,
        admin_link: false,
    };
    super::html_response(StatusCode::OK, html::page(&chrome, body))
}

fn dev_button(tenant: &str, role: &str, label: &str, id: &str) -> Markup {
    html! {
        form method="post" action="/dev/sign-in" class="inline" {
            input type="hidden" name="tenant_id" value=(tenant);
            input type="hidden" name="role" value=(role);
            button type="submit" class="small secondary" id=(id) { (label) }
        }
    }
}

#[derive(Deserialize)]
struct DevSignIn {
    tenant_id: String,
    role: String,
}

/// Opens a session for the chosen tenant and role directly: no token is minted, so the session does not
/// depend on `JWT_AUDIENCE` / `JWT_ISSUER`, which a minted token would have to carry.
async fn dev_sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<DevSignIn>,
) -> Response {
    if !state.settings.auth.dev_sign_in {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(why) = foreign_sign_in(&headers, &state) {
        return refused(
            &state,
            false,
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            why,
            false,
            None,
        );
    }
    let Some(role) = Role::parse(&f.role).filter(|r| r.reads_tenant()) else {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    };
    if TenantId::parse(&f.tenant_id).is_err() {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    }
    let claims = Claims {
        sub: format!("demo-{}", role.as_str()),
        tenant_id: f.tenant_id,
        role: role.as_str().to_owned(),
        exp: Utc::now().timestamp() + DEV_SESSION_SECS,
        email: None,
    };
    // Minted here, for this service: whom the settings expect.
    let expected = &state.settings.auth.jwt_expected;
    let scope = Scope {
        audience: expected.audience.iter().cloned().collect(),
        issuer: expected.issuer.clone(),
    };
    signed_in(&state, &headers, &claims, scope, role, None).await
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
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:8000",
            "localhost:8000",
            "localhost",
            "[::1]:8000",
            "127.0.0.2",
        ] {
            assert!(loopback(h), "{h}");
        }
        for h in [
            "billing.example.com",
            "10.0.0.5:8000",
            "",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!loopback(h), "{h}");
        }
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
