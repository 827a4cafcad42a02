//! The HTTP front: axum's router sends each `/v1` route of `api` to one pipeline that
//! authenticates the request, counts it under its route, applies the configured latency, rate
//! limit and faults, replays idempotent requests, runs the resource under the state lock and
//! renders Stripe's responses; plus the `/_sim` control routes and the hosted pages.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, on, MethodFilter};
use axum::Router;
use serde_json::{json, Value};

use crate::billing;
use crate::clock::{real_now, rfc3339};
use crate::error::ApiError;
use crate::form::{parse_form, parse_pairs, Param, Params};
use crate::ids::new_id;
use crate::store::{CardWrites, RequestCtx, Store, API_VERSION};
use crate::webhooks::{DeliveryLog, Hooks, Target};
use crate::{api, expand, pages, SimConfig};

const MAX_BODY: usize = 8 << 20;

/// When a fault with a `status` strikes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    /// Fails before anything is applied or saved (a retry with the same key runs the request).
    Before,
    /// Applies the request and saves its result under the idempotency key, then answers the
    /// error: a lost reply (a retry with the same key gets the saved result).
    After,
    /// Fails with a 5xx that is saved under the idempotency key, nothing applied: a retry with
    /// the same key gets the same 5xx back for 24 hours, `Idempotent-Replayed: true`.
    Saved,
    /// Applies the request, then saves a 5xx under the key instead of the result.
    SavedAfter,
}

impl When {
    fn name(self) -> &'static str {
        match self {
            When::Before => "before",
            When::After => "after",
            When::Saved => "saved",
            When::SavedAfter => "saved_after",
        }
    }
}

#[derive(Debug, Clone)]
struct Fault {
    path: String,
    method: Option<String>,
    status: Option<u16>,
    /// `lock_timeout` turns a 429 into Stripe's lock-timeout answer.
    code: Option<String>,
    delay_ms: Option<u64>,
    remaining: u32,
    when: When,
}

impl Fault {
    fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "method": self.method,
            "status": self.status,
            "code": self.code,
            "delay_ms": self.delay_ms,
            "count": self.remaining,
            "when": self.when.name(),
        })
    }

    fn error(&self) -> ApiError {
        fault_error(self.status.unwrap_or(500), self.code.as_deref())
    }
}

#[derive(Debug, Clone)]
enum Idem {
    InFlight(String),
    Done {
        fingerprint: String,
        status: u16,
        body: String,
        /// Headers answered with the saved result (`Stripe-Should-Retry` on a saved 5xx).
        headers: Vec<(&'static str, String)>,
        at: i64,
    },
}

/// Stripe's per-endpoint limits (https://docs.stripe.com/rate-limits), enforced with the
/// global one while `/_sim/rate_limit` is on.
pub const SEARCH_PER_SECOND: u32 = 20;
pub const ENDPOINT_PER_SECOND: u32 = 25;

/// Behaviour configured through `/_sim` and request bookkeeping; a lock of its own so the
/// counters never wait for a long state operation.
#[derive(Default)]
struct Control {
    faults: Vec<Fault>,
    per_second: u32,
    window: (i64, u32),
    /// Whether Stripe's per-endpoint limits apply with `per_second` (on by default).
    per_endpoint_off: bool,
    /// One-second windows per route pattern, and one for all search routes together.
    endpoint_windows: HashMap<String, (i64, u32)>,
    search_window: (i64, u32),
    latency_ms: u64,
    requests_total: u64,
    by_route: BTreeMap<String, u64>,
    idem: HashMap<(String, String), Idem>,
}

pub struct App {
    config: SimConfig,
    store: Mutex<Store>,
    ctl: Mutex<Control>,
    generation: Arc<AtomicU64>,
    log: DeliveryLog,
    client: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in one request must not take the simulator down for the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    pub fn new(config: SimConfig, base_url: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let generation = Arc::new(AtomicU64::new(0));
        let log: DeliveryLog = Arc::default();
        let hooks = Self::hooks(&config, &client, &log, &generation);
        App {
            store: Mutex::new(Store::new(base_url.unwrap_or_default(), hooks)),
            ctl: Mutex::new(Control::default()),
            config,
            generation,
            log,
            client,
        }
    }

    fn hooks(
        config: &SimConfig,
        client: &reqwest::Client,
        log: &DeliveryLog,
        generation: &Arc<AtomicU64>,
    ) -> Hooks {
        Hooks::new(
            config.webhook_url.clone().map(|url| Target {
                url,
                secret: config.webhook_secret.clone(),
            }),
            client.clone(),
            log.clone(),
            generation.clone(),
            config.webhook_retry_base,
            config.webhook_max_attempts,
        )
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn reset(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let hooks = Self::hooks(&self.config, &self.client, &self.log, &self.generation);
        {
            let mut s = self.store();
            let base = std::mem::take(&mut s.base_url);
            *s = Store::new(base, hooks);
        }
        *lock(&self.ctl) = Control::default();
        lock(&self.log).clear();
    }
}

pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    for route in api::routes() {
        let (method, path) = route.method_and_path();
        let filter =
            MethodFilter::try_from(method).expect("a route's method is a plain HTTP method");
        router = router.route(
            path,
            on(filter, move |State(app): State<Arc<App>>, req: Request| {
                // axum lets `{id}` match an empty segment; Stripe has no route for one.
                let id = route.capture(req.uri().path());
                let routed = (id.as_deref() != Some("")).then_some((route, id));
                entry(app, routed, req)
            }),
        );
    }
    router
        .route("/_sim/{*rest}", any(entry_control))
        // An unknown `/v1` path, or a known one with another method, is Stripe's 404 (counted and
        // limited like any request); anything else is a hosted page or the pages' 404.
        .fallback(entry_other)
        .method_not_allowed_fallback(entry_other)
        .with_state(app)
}

async fn entry_control(State(app): State<Arc<App>>, req: Request) -> Response {
    entry(app, None, req).await
}

async fn entry_other(State(app): State<Arc<App>>, req: Request) -> Response {
    entry(app, None, req).await
}

/// Reads the body (Stripe's limit), learns the base URL from the first request, and runs the
/// request: `routed` is the `/v1` route axum matched and its `{id}`.
async fn entry(app: Arc<App>, routed: Option<Routed>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                &ApiError::invalid("Request body too large."),
                "req_none",
                None,
            )
        }
    };
    {
        let mut s = app.store();
        if s.base_url.is_empty() {
            let host = parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            s.base_url = format!("http://{host}");
        }
    }
    let path = parts.uri.path().to_string();
    let mut response = if path.starts_with("/v1/") {
        // Stripe finishes a request whose caller hung up (a client timeout): run it on its own task, so
        // that dropping the connection neither abandons the work nor leaves its idempotency key in
        // flight forever.
        let app = app.clone();
        tokio::spawn(async move { api_request(&app, routed, &parts, bytes).await })
            .await
            .unwrap_or_else(|_| error_response(&ApiError::server_error(500), "req_none", None))
    } else if let Some(rest) = path.strip_prefix("/_sim/") {
        control(&app, &parts, rest, &bytes)
    } else {
        pages::handle(&mut app.store(), &parts, &bytes)
    };
    // Stripe's clock is the simulator's: every answer is dated by it, so a client reading time
    // from Stripe's answers sees the simulated days pass.
    let now = app.store().now();
    if let Ok(v) = HeaderValue::from_str(&http_date(now)) {
        response.headers_mut().insert("date", v);
    }
    response
}

/// An HTTP date (RFC 9110 IMF-fixdate) for a Unix time.
fn http_date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

// ---- responses ------------------------------------------------------------------------------

pub fn respond(status: u16, body: String, headers: &[(&str, String)]) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    for (k, v) in headers {
        if let (Ok(name), Ok(val)) = (
            axum::http::HeaderName::try_from(*k),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, val);
        }
    }
    r
}

fn error_response(e: &ApiError, rid: &str, version: Option<&str>) -> Response {
    let mut headers = vec![
        ("request-id", rid.to_string()),
        ("stripe-version", version.unwrap_or(API_VERSION).to_string()),
    ];
    for (k, v) in &e.headers {
        headers.push((k, v.clone()));
    }
    respond(e.status, e.body(rid).to_string(), &headers)
}

fn lock_timeout() -> ApiError {
    ApiError::invalid(
        "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are making multiple concurrent requests to a single object, make your requests serially or at a lower rate.",
    )
    .status(409)
    .code("lock_timeout")
    // Stripe advises the retry in this header (its SDKs follow it: "in cases of lock timeouts").
    .header("Stripe-Should-Retry", "true")
}

fn fault_error(status: u16, code: Option<&str>) -> ApiError {
    match status {
        // Stripe answers some lock timeouts with 429 (stripe-ruby retries "a 429 that's a lock timeout").
        429 if code == Some("lock_timeout") => lock_timeout().status(429),
        429 => ApiError::rate_limited(),
        402 => ApiError::card_declined(),
        401 => ApiError::new(401, "invalid_request_error", "Invalid API Key provided."),
        404 => ApiError::invalid("No such object: simulated fault")
            .status(404)
            .code("resource_missing"),
        409 => lock_timeout(),
        s if s >= 500 => ApiError::server_error(s),
        s => ApiError::invalid("Simulated fault.").status(s),
    }
}

// ---- /v1 --------------------------------------------------------------------------------------

/// Counts one request in a one-second window; whether it is over `limit`.
fn over(window: &mut (i64, u32), sec: i64, limit: u32) -> bool {
    if window.0 == sec {
        window.1 += 1;
    } else {
        *window = (sec, 1);
    }
    window.1 > limit
}

/// Stripe's answer to an `Idempotency-Key` outside 1-255 characters (400, not saved).
fn bad_idempotency_key(len: usize) -> ApiError {
    ApiError::invalid(format!(
        "Idempotent key length is {len}, which is outside accepted lengths. Idempotent Keys must be 1-255 characters long. If you're looking for a decent generator, try using a UUID defined by IETF RFC 4122."
    ))
}

fn api_key(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?.trim();
    if let Some(k) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    {
        let k = k.trim();
        return (!k.is_empty()).then(|| k.to_string());
    }
    if let Some(b) = auth
        .strip_prefix("Basic ")
        .or_else(|| auth.strip_prefix("basic "))
    {
        let decoded = base64_decode(b.trim())?;
        let user = decoded.split(':').next()?.to_string();
        return (!user.is_empty()).then_some(user);
    }
    None
}

/// Standard base64, enough for Basic auth without another dependency.
fn base64_decode(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    String::from_utf8(out).ok()
}

fn read_params(parts: &Parts, body: &[u8]) -> Result<BTreeMap<String, Param>, ApiError> {
    let mut pairs: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let is_json = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json && !body.is_empty() {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("Invalid JSON body: {e}")))?;
        let mut map = parse_pairs(pairs.into_iter());
        if let Param::Map(m) = Param::from_json(&v) {
            map.extend(m);
        }
        return Ok(map);
    }
    pairs.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    Ok(parse_pairs(pairs.into_iter()))
}

/// A `/v1` route and the `{id}` it captured.
type Routed = (&'static api::Route, Option<String>);

async fn api_request(
    app: &Arc<App>,
    routed: Option<Routed>,
    parts: &Parts,
    body: Bytes,
) -> Response {
    let rid = new_id("req");
    let version = parts
        .headers
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let version = version.as_deref();
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let route_name = routed
        .as_ref()
        .map(|(r, _)| r.pattern.to_string())
        .unwrap_or_else(|| format!("{method} {path}"));
    let is_search = route_name.ends_with("/search");

    // Bookkeeping, rate limits and fault selection under the control lock only.
    let (latency, limited, fault) = {
        let mut c = lock(&app.ctl);
        c.requests_total += 1;
        *c.by_route.entry(route_name.clone()).or_insert(0) += 1;
        let limited = if c.per_second > 0 {
            let sec = real_now();
            let per_second = c.per_second;
            let global = over(&mut c.window, sec, per_second);
            let mut endpoint = false;
            if !c.per_endpoint_off {
                if is_search {
                    endpoint |= over(&mut c.search_window, sec, SEARCH_PER_SECOND);
                }
                let w = c.endpoint_windows.entry(route_name).or_insert((0, 0));
                endpoint |= over(w, sec, ENDPOINT_PER_SECOND);
            }
            global || endpoint
        } else {
            false
        };
        let fault = c
            .faults
            .iter_mut()
            .find(|f| {
                f.remaining > 0
                    && path.starts_with(&f.path)
                    && f.method
                        .as_ref()
                        .is_none_or(|m| m.eq_ignore_ascii_case(method))
            })
            .map(|f| {
                f.remaining -= 1;
                f.clone()
            });
        c.faults.retain(|f| f.remaining > 0);
        (c.latency_ms, limited, fault)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    // A slow request is slow while it runs: after its idempotency key is taken (below), so a
    // concurrent retry with the same key meets `idempotency_key_in_use`.
    let fault_delay = fault.as_ref().and_then(|f| f.delay_ms);
    let Some(key) = api_key(&parts.headers) else {
        let e = ApiError::new(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
        );
        return error_response(&e, &rid, version);
    };
    if limited {
        return error_response(&ApiError::rate_limited(), &rid, version);
    }
    // Idempotency: POSTs only, scoped by API key; the key must be 1-255 characters.
    let idem_key = (parts.method == Method::POST)
        .then(|| parts.headers.get("idempotency-key"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(k) = &idem_key {
        let len = k.chars().count();
        if !(1..=255).contains(&len) {
            return error_response(&bad_idempotency_key(len), &rid, version);
        }
    }
    let fault = match fault {
        Some(f) if f.status.is_some() && f.when == When::Before => {
            return error_response(&f.error(), &rid, version);
        }
        Some(f) if f.status.is_some() => Some(f),
        _ => None,
    };
    let Some((route, id)) = routed else {
        let e = ApiError::invalid(format!(
            "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
        ))
        .status(404);
        return error_response(&e, &rid, version);
    };

    let fingerprint = format!("{method} {path}\n{}", String::from_utf8_lossy(&body));
    if let Some(k) = &idem_key {
        let mut c = lock(&app.ctl);
        let now = real_now();
        c.idem
            .retain(|_, v| !matches!(v, Idem::Done { at, .. } if now - *at > 86_400));
        match c.idem.get(&(key.clone(), k.clone())) {
            Some(Idem::Done {
                fingerprint: fp,
                status,
                body,
                headers: saved,
                ..
            }) => {
                if *fp != fingerprint {
                    drop(c);
                    return error_response(&idem_mismatch(k), &rid, version);
                }
                let mut headers = vec![
                    ("request-id", rid.clone()),
                    ("idempotent-replayed", "true".to_string()),
                    ("idempotency-key", k.clone()),
                    ("original-request", rid.clone()),
                    ("stripe-version", version.unwrap_or(API_VERSION).to_string()),
                ];
                headers.extend(saved.iter().map(|(n, v)| (*n, v.clone())));
                return respond(*status, body.clone(), &headers);
            }
            Some(Idem::InFlight(fp)) => {
                let e = if *fp != fingerprint {
                    idem_mismatch(k)
                } else {
                    ApiError::invalid(format!(
                        "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): {k}. Please try again later."
                    ))
                    .status(409)
                    .code("idempotency_key_in_use")
                };
                drop(c);
                return error_response(&e, &rid, version);
            }
            None => {
                c.idem.insert(
                    (key.clone(), k.clone()),
                    Idem::InFlight(fingerprint.clone()),
                );
            }
        }
    }

    if let Some(ms) = fault_delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    // A saved 5xx that applies nothing: answered and saved under the key without running.
    if let Some(f) = fault.as_ref().filter(|f| f.when == When::Saved) {
        let e = saved_server_error(f);
        if let Some(k) = &idem_key {
            lock(&app.ctl).idem.insert(
                (key.clone(), k.clone()),
                Idem::Done {
                    fingerprint,
                    status: e.status,
                    body: e.body(&rid).to_string(),
                    headers: e.headers.clone(),
                    at: real_now(),
                },
            );
        }
        return error_response(&e, &rid, version);
    }

    let result = read_params(parts, &body).and_then(|map| {
        let mut p = Params::new(map);
        let expand = p.str_list("expand")?.unwrap_or_default();
        let mut s = app.store();
        s.request = RequestCtx {
            id: Some(rid.clone()),
            idempotency_key: idem_key.clone(),
        };
        let out = api::execute(&mut s, route, id, p).and_then(|mut v| {
            expand::apply(&s, &mut v, &expand)?;
            Ok(v)
        });
        s.request = RequestCtx::default();
        out
    });
    // A 5xx saved after the change was applied replaces the result.
    let saved_after = fault
        .as_ref()
        .filter(|f| f.when == When::SavedAfter)
        .map(saved_server_error);
    let (status, body_text, err) = match (&saved_after, &result) {
        (Some(e), _) => (e.status, e.body(&rid).to_string(), Some(e)),
        (None, Ok(v)) => (200, v.to_string(), None),
        (None, Err(e)) => (e.status, e.body(&rid).to_string(), Some(e)),
    };
    if let Some(k) = &idem_key {
        let mut c = lock(&app.ctl);
        let slot = (key.clone(), k.clone());
        if err.is_none_or(|e| e.is_saved_for_idempotency()) {
            c.idem.insert(
                slot,
                Idem::Done {
                    fingerprint,
                    status,
                    body: body_text.clone(),
                    headers: err.map(|e| e.headers.clone()).unwrap_or_default(),
                    at: real_now(),
                },
            );
        } else {
            c.idem.remove(&slot);
        }
    }
    if let Some(f) = fault.as_ref().filter(|f| f.when == When::After) {
        // The change is applied (and saved under the idempotency key), the reply is lost.
        return error_response(&f.error(), &rid, version);
    }
    match err {
        Some(e) => error_response(e, &rid, version),
        None => {
            let mut headers = vec![
                ("request-id", rid.clone()),
                ("stripe-version", version.unwrap_or(API_VERSION).to_string()),
            ];
            if let Some(k) = &idem_key {
                headers.push(("idempotency-key", k.clone()));
            }
            respond(status, body_text, &headers)
        }
    }
}

/// The 5xx of a `saved` fault: as Stripe answers a 500 its idempotency layer keeps, with
/// `Stripe-Should-Retry: false` (a retry with the same key can only get it again; stripe-python:
/// "we expect the stripe-should-retry header to be false in most cases when a 500 is returned,
/// since our idempotency framework would typically replay it anyway").
fn saved_server_error(f: &Fault) -> ApiError {
    let mut e = ApiError::server_error(f.status.unwrap_or(500));
    e.headers = vec![("Stripe-Should-Retry", "false".to_string())];
    e
}

fn idem_mismatch(k: &str) -> ApiError {
    ApiError::new(
        400,
        "idempotency_error",
        format!(
            "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
        ),
    )
}

// ---- /_sim ----------------------------------------------------------------------------------

fn control_params(parts: &Parts, body: &[u8]) -> Result<Params, ApiError> {
    let is_json = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        return read_params(parts, body).map(Params::new);
    }
    let mut map = parts
        .uri
        .query()
        .map(|q| parse_form(q.as_bytes()))
        .unwrap_or_default();
    map.extend(parse_form(body));
    Ok(Params::new(map))
}

/// The account settings `/_sim/settings` and `/_sim/portal/card_update_writes` change.
fn settings_json(s: &Store) -> Value {
    json!({
        "retry_one_off_invoices": s.settings.retry_one_off_invoices,
        "portal_card_update_writes": s.settings.portal_card_writes.as_str(),
    })
}

fn ok_json(v: Value) -> Response {
    respond(200, v.to_string(), &[])
}

fn control(app: &Arc<App>, parts: &Parts, rest: &str, body: &[u8]) -> Response {
    let rid = new_id("req");
    match control_inner(app, parts, rest, body) {
        Ok(v) => ok_json(v),
        Err(e) => error_response(&e, &rid, None),
    }
}

fn control_inner(
    app: &Arc<App>,
    parts: &Parts,
    rest: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut p = control_params(parts, body)?;
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let m = parts.method.as_str();
    match (m, segs.as_slice()) {
        ("POST", ["checkout", "sessions", id, "complete"]) => {
            let card = p.opt_nonempty("card")?;
            let kind = p.enum_str("payment_method_type", &["card", "us_bank_account"])?;
            let account = p.opt_nonempty("account_number")?;
            let email = p.opt_nonempty("email")?;
            p.finish()?;
            let payment = match (kind.as_deref(), account) {
                (Some("us_bank_account"), Some(a)) => billing::CheckoutPayment::Bank(a),
                (Some("us_bank_account"), None) => {
                    return Err(ApiError::missing_param("account_number"))
                }
                _ => billing::CheckoutPayment::Card(
                    card.unwrap_or_else(|| billing::DEFAULT_CARD.into()),
                ),
            };
            let mut s = app.store();
            billing::complete_checkout(&mut s, id, payment, email)?;
            Ok(s.render_id(id).unwrap_or_default())
        }
        // What the portal's card update does; `/_sim/customers/{id}/card` is the older name.
        ("POST", ["portal", "update_card"]) | ("POST", ["customers", _, "card"]) => {
            let customer = match segs.as_slice() {
                ["customers", id, "card"] => id.to_string(),
                _ => p.req_str("customer")?,
            };
            let card = p
                .opt_nonempty("card")?
                .unwrap_or_else(|| billing::DEFAULT_CARD.into());
            p.finish()?;
            let number = billing::check_card(&card)?;
            let mut s = app.store();
            if !s.customers.contains(&customer) {
                return Err(ApiError::no_such("customer", &customer, "customer"));
            }
            let pm = billing::replace_card(&mut s, &customer, &number);
            Ok(s.render_id(&pm).unwrap_or_default())
        }
        ("POST", ["portal", "card_update_writes"]) => {
            let writes = p
                .enum_str("writes", &["customer", "subscription", "both"])?
                .ok_or_else(|| ApiError::missing_param("writes"))?;
            p.finish()?;
            let mut s = app.store();
            s.settings.portal_card_writes =
                CardWrites::parse(&writes).unwrap_or(CardWrites::Customer);
            Ok(settings_json(&s))
        }
        ("POST", ["invoices", id, "confirm"]) => {
            p.finish()?;
            let mut s = app.store();
            billing::confirm_payment(&mut s, id)?;
            Ok(s.render_id(id).unwrap_or_default())
        }
        ("GET", ["settings"]) => Ok(settings_json(&app.store())),
        ("POST", ["settings"]) => {
            let retry = p.bool("retry_one_off_invoices")?;
            p.finish()?;
            let mut s = app.store();
            if let Some(r) = retry {
                s.settings.retry_one_off_invoices = r;
            }
            Ok(settings_json(&s))
        }
        ("POST", ["clock", "advance"]) => {
            let seconds = p.int("seconds")?;
            let to = p.opt_nonempty("to")?;
            p.finish()?;
            let mut s = app.store();
            let now = s.now();
            let target = match (seconds, to) {
                (Some(sec), _) => now + sec.max(0),
                (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(&t)
                    .map(|d| d.timestamp())
                    .or_else(|_| t.parse::<i64>())
                    .map_err(|_| ApiError::invalid(format!("Invalid time: {t}")).param("to"))?,
                (None, None) => return Err(ApiError::missing_param("seconds")),
            };
            if target < now {
                return Err(ApiError::invalid("The clock only moves forward.").param("to"));
            }
            billing::advance_to(&mut s, target);
            let now = s.now();
            Ok(json!({"now": now, "iso": rfc3339(now)}))
        }
        ("GET", ["clock"]) => {
            let now = app.store().now();
            Ok(json!({"now": now, "iso": rfc3339(now)}))
        }
        ("GET", ["webhooks", "deliveries"]) => {
            let event = p.opt_nonempty("event_id")?;
            let log = lock(&app.log);
            let data: Vec<Value> = log
                .iter()
                .rev()
                .filter(|d| event.as_ref().is_none_or(|e| d.event_id == *e))
                .map(|d| d.to_json())
                .collect();
            Ok(json!({"object": "list", "data": data}))
        }
        ("GET", ["stats"]) => {
            let c = lock(&app.ctl);
            Ok(json!({"requests_total": c.requests_total, "by_route": c.by_route}))
        }
        ("POST", ["stats", "reset"]) => {
            let mut c = lock(&app.ctl);
            c.requests_total = 0;
            c.by_route.clear();
            Ok(json!({"requests_total": 0, "by_route": {}}))
        }
        ("GET", ["faults"]) => {
            let c = lock(&app.ctl);
            Ok(json!({"faults": c.faults.iter().map(Fault::to_json).collect::<Vec<_>>()}))
        }
        ("DELETE", ["faults"]) => {
            lock(&app.ctl).faults.clear();
            Ok(json!({"faults": []}))
        }
        ("POST", ["faults"]) => {
            let path = p.opt_nonempty("path")?.unwrap_or_else(|| "/v1/".into());
            let method = p.opt_nonempty("method")?;
            let status = p.int("status")?.map(|s| s as u16);
            let delay_ms = p.int("delay_ms")?.map(|d| d.max(0) as u64);
            let count = p.int("count")?.unwrap_or(1).max(1) as u32;
            let code = p.enum_str("code", &["lock_timeout"])?;
            let when = match p
                .enum_str("when", &["before", "after", "saved", "saved_after"])?
                .as_deref()
            {
                Some("after") => When::After,
                Some("saved") => When::Saved,
                Some("saved_after") => When::SavedAfter,
                _ => When::Before,
            };
            p.finish()?;
            if status.is_none() && delay_ms.is_none() {
                return Err(ApiError::missing_param("status"));
            }
            if when != When::Before && status.is_none() {
                return Err(
                    ApiError::invalid(format!("when={} needs a status.", when.name()))
                        .param("when"),
                );
            }
            if matches!(when, When::Saved | When::SavedAfter) && status.is_some_and(|s| s < 500) {
                return Err(ApiError::invalid(format!(
                    "when={} saves a 5xx under the idempotency key: status must be 500 or more.",
                    when.name()
                ))
                .param("status"));
            }
            if code.is_some() && !matches!(status, Some(409) | Some(429)) {
                return Err(
                    ApiError::invalid("code=lock_timeout needs status 409 or 429.").param("code"),
                );
            }
            let f = Fault {
                path,
                method,
                status,
                code,
                delay_ms,
                remaining: count,
                when,
            };
            let v = f.to_json();
            lock(&app.ctl).faults.push(f);
            Ok(v)
        }
        ("POST", ["rate_limit"]) => {
            let n = p.int("per_second")?.unwrap_or(0).max(0) as u32;
            let per_endpoint = p.bool("per_endpoint")?.unwrap_or(true);
            p.finish()?;
            {
                let mut c = lock(&app.ctl);
                c.per_second = n;
                c.per_endpoint_off = !per_endpoint;
                c.window = (0, 0);
                c.search_window = (0, 0);
                c.endpoint_windows.clear();
            }
            app.store().sub_limits = (n > 0 && per_endpoint).then(Default::default);
            Ok(json!({
                "per_second": n,
                "per_endpoint": per_endpoint && n > 0,
                "limits": {
                    "search_per_second": SEARCH_PER_SECOND,
                    "endpoint_per_second": ENDPOINT_PER_SECOND,
                    "subscription_invoices_per_minute": crate::store::SUB_INVOICES_PER_MINUTE,
                    "subscription_invoices_per_day": crate::store::SUB_INVOICES_PER_DAY,
                    "subscription_quantity_updates_per_hour": crate::store::SUB_QUANTITY_UPDATES_PER_HOUR,
                },
            }))
        }
        ("POST", ["latency"]) => {
            let ms = p.int("ms")?.unwrap_or(0).max(0) as u64;
            p.finish()?;
            lock(&app.ctl).latency_ms = ms;
            Ok(json!({"ms": ms}))
        }
        ("POST", ["reset"]) => {
            app.reset();
            Ok(json!({"reset": true}))
        }
        _ => Err(
            ApiError::invalid(format!("Unrecognized simulator route ({m}: /_sim/{rest})."))
                .status(404),
        ),
    }
}
