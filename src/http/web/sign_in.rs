//! The sign-in pages: signing in with the platform's own JWT (and the local demo's sign-in), which opens a
//! server-side session, and signing out, which ends it.
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

use super::html::{self, Chrome};
use super::session::{
    clear_cookie, cookie_value, foreign_sign_in, home_of, id_hash, safe_next, set_cookie, Posted,
    COOKIE, EXPIRED_KEPT_SECS,
};
use crate::auth::jwt::{self, Claims, JwtError, Scope};
use crate::auth::Role;
use crate::db::web_sessions;
use crate::domain::TenantId;
use crate::http::error::{ApiError, ErrorCode};
use crate::state::AppState;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

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
    let list = match crate::tenants::list(&state.db).await {
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
}
