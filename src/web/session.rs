//! Signing in to the pages with the platform's own JWT, kept in an HttpOnly cookie, and CSRF protection.
//!
//! - `POST /auth/session` (form or JSON `{token}`) verifies the token and sets the cookie; the token never
//!   travels in a URL, so it reaches no access log, history or `Referer`.
//! - The cookie is `SameSite=Lax`: Stripe sends the browser back from Checkout and the portal with a
//!   top-level GET from its own site, which a `Strict` cookie would not survive (the user would land on the
//!   sign-in page). Lax still withholds the cookie from cross-site POSTs.
//! - Every state-changing form carries a token derived from the session (HMAC of the cookie's JWT with
//!   `JWT_SECRET`), and `Origin`/`Referer`, when the browser sends them, must name this service.

use super::html::{self, Chrome};
use crate::auth::jwt::{self, Claims, JwtError};
use crate::auth::{Caller, Role};
use crate::db::tenants;
use crate::domain::TenantId;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use hmac::{Hmac, Mac};
use maud::{html, Markup};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha256;

pub const COOKIE: &str = "billing_session";
/// How long a dev sign-in lasts.
const DEV_TOKEN_TTL_SECS: i64 = 8 * 3600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(sign_in_page))
        .route("/auth/session", post(create_session))
        .route("/auth/logout", post(logout))
        .route("/dev/sign-in", get(dev_sign_in_page).post(dev_sign_in))
}

/// The CSRF token of a session: an HMAC of its JWT, so it needs no storage and dies with the session.
pub fn csrf_token(state: &AppState, jwt: &str) -> String {
    hex::encode(csrf_mac(state, jwt).finalize().into_bytes())
}

fn csrf_mac(state: &AppState, jwt: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.jwt_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"csrf\0");
    mac.update(jwt.as_bytes());
    mac
}

fn csrf_ok(state: &AppState, jwt: &str, given: &str) -> bool {
    hex::decode(given).is_ok_and(|bytes| csrf_mac(state, jwt).verify_slice(&bytes).is_ok())
}

/// Whether `Origin` (or else `Referer`) names this service; true when the browser sent neither.
pub fn same_origin(headers: &HeaderMap, state: &AppState) -> bool {
    let public = origin_of(&state.settings.http.public_base_url);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let allowed = |origin: &str| {
        public.as_deref() == Some(origin)
            || host.is_some_and(|h| {
                origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    == Some(h)
            })
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(allowed);
    }
    if let Some(referer) = headers.get(header::REFERER) {
        return referer
            .to_str()
            .ok()
            .and_then(origin_of)
            .is_some_and(|o| allowed(&o));
    }
    true
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
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
}

fn secure(state: &AppState) -> bool {
    state.settings.http.public_base_url.starts_with("https://")
}

fn set_cookie(state: &AppState, jwt: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={jwt}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("a JWT is a valid header value")
}

fn clear_cookie(state: &AppState) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    ))
    .expect("static cookie")
}

/// A signed-in user of the pages: the verified token's caller and the session's CSRF token.
#[derive(Clone)]
pub struct PageUser {
    pub caller: Caller,
    pub csrf: String,
    jwt: String,
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
        let to_sign_in = || Redirect::to("/sign-in").into_response();
        let jwt = cookie_value(&parts.headers, COOKIE)
            .filter(|v| !v.is_empty())
            .ok_or_else(to_sign_in)?
            .to_owned();
        let claims = jwt::verify_for(
            &jwt,
            state.jwt_secret.expose().as_bytes(),
            chrono::Utc::now().timestamp(),
            &state.settings.auth.jwt_expected,
        )
        .map_err(|_| {
            // An expired or foreign cookie: drop it so the sign-in page starts clean.
            let mut r = to_sign_in();
            r.headers_mut()
                .insert(header::SET_COOKIE, clear_cookie(state));
            r
        })?;
        let role = claims.role().filter(|r| r.reads_tenant()).ok_or_else(|| {
            (
                StatusCode::FORBIDDEN,
                "This role cannot use the billing pages.",
            )
                .into_response()
        })?;
        let csrf = csrf_token(state, &jwt);
        Ok(PageUser {
            caller: Caller { claims, role },
            csrf,
            jwt,
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
        if !csrf_ok(state, &user.jwt, &given) {
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
    let body = html! {
        div class="card narrow" {
            h1 { (status.canonical_reason().unwrap_or("Error")) }
            p { (message) }
            p { a href="/billing" { "Back to billing" } }
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

fn signed_in(state: &AppState, jwt: &str, claims: &Claims, role: Role) -> Response {
    let max_age = (claims.exp - chrono::Utc::now().timestamp()).max(0);
    let mut r = Redirect::to(home_of(role)).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(state, jwt, max_age));
    r
}

fn sign_in_form(state: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        div class="card narrow" {
            h1 { "Sign in to billing" }
            p class="sub" {
                "Paste the access token the Thanotopolis platform gave you. It is kept in a secure cookie \
                 for this site only."
            }
            @if let Some(e) = error {
                (html::notice("error", "sign-in-error", e))
            }
            form method="post" action="/auth/session" {
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

async fn sign_in_page(State(state): State<AppState>) -> Response {
    sign_in_form(&state, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

/// Signs in with a platform token, from a form or a JSON body.
async fn create_session(State(state): State<AppState>, req: Request) -> Response {
    if !same_origin(req.headers(), &state) {
        return sign_in_form(
            &state,
            Some("The sign-in was sent from another site, so it was refused."),
            StatusCode::FORBIDDEN,
        );
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let token = if is_json {
        axum::Json::<TokenBody>::from_request(req, &state)
            .await
            .ok()
            .map(|axum::Json(b)| b.token)
    } else {
        Form::<TokenBody>::from_request(req, &state)
            .await
            .ok()
            .map(|Form(b)| b.token)
    };
    let Some(token) = token else {
        return sign_in_form(
            &state,
            Some("Paste a token to sign in."),
            StatusCode::BAD_REQUEST,
        );
    };
    let token = token.trim();
    let verified = jwt::verify_for(
        token,
        state.jwt_secret.expose().as_bytes(),
        chrono::Utc::now().timestamp(),
        &state.settings.auth.jwt_expected,
    );
    let claims = match verified {
        Ok(c) => c,
        Err(JwtError::Expired) => {
            return sign_in_form(
                &state,
                Some("This token has expired. Get a new one from the platform."),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(_) => {
            return sign_in_form(
                &state,
                Some("This token was not accepted. Check that you pasted all of it."),
                StatusCode::UNAUTHORIZED,
            )
        }
    };
    match claims.role().filter(|r| r.reads_tenant()) {
        Some(role) => signed_in(&state, token, &claims, role),
        None => sign_in_form(
            &state,
            Some("This token's role cannot use the billing pages."),
            StatusCode::FORBIDDEN,
        ),
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn logout(State(state): State<AppState>, _posted: Posted<Empty>) -> Response {
    let mut r = Redirect::to("/sign-in").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&state));
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
        Err(e) => return crate::error::ApiError::from(e).into_response(),
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

async fn dev_sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<DevSignIn>,
) -> Response {
    if !state.settings.auth.dev_sign_in {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !same_origin(&headers, &state) {
        return StatusCode::FORBIDDEN.into_response();
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
        exp: chrono::Utc::now().timestamp() + DEV_TOKEN_TTL_SECS,
        email: None,
    };
    let token = jwt::sign(&claims, state.jwt_secret.expose().as_bytes());
    signed_in(&state, &token, &claims, role)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            HeaderValue::from_static("a=1; billing_session=abc.def.ghi; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc.def.ghi"));
        assert_eq!(cookie_value(&h, "missing"), None);
    }
}
