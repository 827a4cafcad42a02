//! The HTTP client: pinned version, timeouts, idempotency keys on writes, retries with backoff and jitter,
//! a shared rate limit.

use super::error::StripeError;
use super::params::Params;
use super::ratelimit::StripeLimits;
use super::STRIPE_VERSION;
use crate::config::Secret;
use rand::Rng;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the client behaves; `Default` suits production.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Per attempt, connection included.
    pub timeout: Duration,
    /// Retries after the first attempt, for retryable failures only.
    pub max_retries: u32,
    /// First backoff; doubles each retry, with jitter, capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Client-side limit on all calls (0: none).
    pub max_requests_per_second: u32,
}

impl ClientOptions {
    /// The options the Stripe settings give (`STRIPE_TIMEOUT_MS`, `STRIPE_MAX_RETRIES`, ...).
    pub fn from_settings(stripe: &crate::config::StripeSettings) -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_millis(stripe.timeout_ms.max(1)),
            max_retries: stripe.max_retries,
            base_backoff: Duration::from_millis(stripe.retry_base_ms),
            max_requests_per_second: stripe.max_requests_per_second,
            ..ClientOptions::default()
        }
    }
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            // As Stripe's official SDKs.
            timeout: Duration::from_secs(80),
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_requests_per_second: 25,
        }
    }
}

#[derive(Clone)]
pub struct StripeClient(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
    options: ClientOptions,
    limiter: StripeLimits,
    /// The `Request-Id` of the last answer (for `stripe check`'s checklist).
    last_request_id: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("base", &self.0.base)
            .field("key", &self.0.key)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

impl StripeClient {
    /// `base` is e.g. `https://api.stripe.com` (no trailing `/v1`); `key` the secret key.
    pub fn new(base: &str, key: Option<Secret>, options: ClientOptions) -> StripeClient {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("thanotopolis-billing/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        StripeClient(Arc::new(Inner {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            limiter: StripeLimits::new(options.max_requests_per_second),
            last_request_id: std::sync::Mutex::new(None),
            options,
        }))
    }

    /// Stripe's `Request-Id` of the last answer this client received.
    pub fn last_request_id(&self) -> Option<String> {
        self.0.last_request_id.lock().expect("request id").clone()
    }

    pub fn base(&self) -> &str {
        &self.0.base
    }

    pub fn is_configured(&self) -> bool {
        self.0.key.as_ref().is_some_and(|k| !k.is_empty())
    }

    /// GET `/v1/{path}` with query parameters.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Params,
    ) -> Result<T, StripeError> {
        self.request(Method::Get, path, query, None).await
    }

    /// POST `/v1/{path}`; `idempotency_key` must be derived from what the write does, so that a retry
    /// (ours, or a re-run after a crash) is recognised by Stripe as the same write. A key outside
    /// Stripe's 1-255 characters is sent as a digest of itself (see [`idempotency_key`]).
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Params,
        idempotency_key: &str,
    ) -> Result<T, StripeError> {
        let key = idempotency_key_for(idempotency_key);
        self.request(Method::Post, path, params, Some(&key)).await
    }

    /// DELETE `/v1/{path}`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, StripeError> {
        self.request(Method::Delete, path, &Params::new(), None)
            .await
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &Params,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let key = self
            .0
            .key
            .as_ref()
            .filter(|k| !k.is_empty())
            .ok_or(StripeError::NotConfigured)?;
        let url = format!("{}/v1/{}", self.0.base, path.trim_start_matches('/'));
        let mut attempt = 0u32;
        loop {
            self.0.limiter.acquire(method.as_str(), path).await;
            let started = Instant::now();
            let result = self
                .send_once(method, &url, key, params, idempotency_key)
                .await;
            let elapsed = started.elapsed();
            let (outcome, retry_after) = match &result {
                Ok(_) => ("ok".to_owned(), None),
                Err((e, retry_after)) => (
                    match e {
                        StripeError::Timeout => "timeout".to_owned(),
                        _ => e
                            .status()
                            .map_or_else(|| "network".to_owned(), |s| s.to_string()),
                    },
                    *retry_after,
                ),
            };
            crate::metrics::stripe_call(method.as_str(), path, &outcome, elapsed);
            match result {
                Ok(answer) => {
                    tracing::debug!(
                        method = method.as_str(),
                        path,
                        ms = elapsed.as_millis() as u64,
                        replayed = answer.replayed,
                        "stripe call"
                    );
                    return decode_dated(&answer);
                }
                Err((err, _)) if attempt < self.0.options.max_retries && err.is_retryable() => {
                    let delay = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(
                        method = method.as_str(),
                        path,
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        error = %err,
                        "stripe call failed; retrying with the same idempotency key"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err((err, _)) => {
                    tracing::warn!(method = method.as_str(), path, error = %err, "stripe call failed");
                    return Err(err);
                }
            }
        }
    }

    /// Exponential backoff with full jitter in its upper half: spreads retries of many tasks apart.
    fn backoff(&self, attempt: u32) -> Duration {
        let o = &self.0.options;
        let exp = o
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(o.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    /// One attempt: the answer on 2xx, or the error and any `Retry-After` Stripe asked for.
    async fn send_once(
        &self,
        method: Method,
        url: &str,
        key: &Secret,
        params: &Params,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, (StripeError, Option<Duration>)> {
        let http = &self.0.http;
        let mut req = match method {
            Method::Get => {
                let url = if params.is_empty() {
                    url.to_owned()
                } else {
                    format!("{url}?{}", params.encode())
                };
                http.get(url)
            }
            Method::Post => http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(params.encode()),
            Method::Delete => http.delete(url),
        };
        req = req
            .bearer_auth(key.expose())
            .header("Stripe-Version", STRIPE_VERSION);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.map_err(|e| (transport_error(&e), None))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if let Some(id) = headers.get("request-id").and_then(|v| v.to_str().ok()) {
            *self.0.last_request_id.lock().expect("request id") = Some(id.to_owned());
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| (transport_error(&e), None))?;
        if (200..300).contains(&status) {
            let date = headers
                .get(reqwest::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                .map(|d| d.timestamp());
            return Ok(Answer {
                body: body.to_vec(),
                date,
                replayed: replayed(&headers),
            });
        }
        Err((api_error(status, &headers, &body), retry_after(&headers)))
    }
}

/// A 2xx answer: its body, Stripe's clock at it (`Date`, in seconds), and whether it is the answer
/// saved under the request's idempotency key (`Idempotent-Replayed: true`) rather than a new one.
struct Answer {
    body: Vec<u8>,
    date: Option<i64>,
    replayed: bool,
}

/// The answer as `T`, with Stripe's clock at the answer (its `Date` header, in seconds) given to objects
/// that keep it (`_stripe_time`): our copies of an object are ordered by Stripe's clock, not ours; and
/// a replayed answer marked (`_replayed`) for the objects that say whether it was.
fn decode_dated<T: DeserializeOwned>(answer: &Answer) -> Result<T, StripeError> {
    let decode = |e: serde_json::Error| StripeError::Decode(e.to_string());
    if answer.date.is_none() && !answer.replayed {
        return serde_json::from_slice(&answer.body).map_err(decode);
    }
    let mut value: serde_json::Value = serde_json::from_slice(&answer.body).map_err(decode)?;
    if let Some(object) = value.as_object_mut() {
        if let Some(date) = answer.date {
            object.insert(STRIPE_TIME.to_owned(), date.into());
        }
        if answer.replayed {
            object.insert(REPLAYED.to_owned(), true.into());
        }
    }
    serde_json::from_value(value).map_err(decode)
}

/// The fields [`decode_dated`] adds; never one of Stripe's own (theirs have no leading underscore).
pub const STRIPE_TIME: &str = "_stripe_time";
pub const REPLAYED: &str = "_replayed";

/// Whether Stripe answered with what it saved under the idempotency key.
fn replayed(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "true")
}

/// Stripe accepts idempotency keys of 1 to 255 characters. Ours are derived from what a write does
/// and are normally far shorter; one that is not (a long list of webhook events, say) keeps a readable
/// prefix and ends in the SHA-256 of the whole key, so distinct keys stay distinct.
pub fn idempotency_key_for(key: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 255;
    if !key.is_empty() && key.len() <= MAX {
        return std::borrow::Cow::Borrowed(key);
    }
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    let mut prefix_len = MAX - digest.len() - 1;
    while !key.is_char_boundary(prefix_len.min(key.len())) {
        prefix_len -= 1;
    }
    let prefix = &key[..prefix_len.min(key.len())];
    std::borrow::Cow::Owned(format!("{prefix}#{digest}"))
}

/// A request that got no (complete) answer: it may or may not have been applied.
fn transport_error(e: &reqwest::Error) -> StripeError {
    if e.is_timeout() {
        StripeError::Timeout
    } else {
        StripeError::Network(without_url(e))
    }
}

/// reqwest's messages include the URL; ours never need it in logs.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "");
    }
    msg
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
}

fn api_error(status: u16, headers: &HeaderMap, body: &[u8]) -> StripeError {
    let should_retry = headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v == "true");
    let request_id = headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed: Option<ErrorBody> = serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error);
    let (kind, code, message, param) = match parsed {
        Some(e) => (
            e.kind.unwrap_or_else(|| "api_error".into()),
            e.code,
            e.message.unwrap_or_else(|| "no message".into()),
            e.param,
        ),
        None => (
            "api_error".into(),
            None,
            format!("HTTP {status} without Stripe's error body"),
            None,
        ),
    };
    let replayed = replayed(headers);
    StripeError::Api {
        status,
        kind,
        code,
        message,
        param,
        request_id,
        should_retry,
        replayed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &[u8], date: Option<i64>, replayed: bool) -> Answer {
        Answer {
            body: body.to_vec(),
            date,
            replayed,
        }
    }

    #[test]
    fn objects_keep_stripes_clock_at_the_answer() {
        let body = br#"{"id": "sub_1", "status": "active"}"#;
        let v: serde_json::Value = decode_dated(&answer(body, Some(1_800_000_000), false)).unwrap();
        assert_eq!(v[STRIPE_TIME], 1_800_000_000);
        assert!(v.get(REPLAYED).is_none());
        let v: serde_json::Value = decode_dated(&answer(body, None, false)).unwrap();
        assert!(v.get(STRIPE_TIME).is_none());
        // A list is left as it is (its objects are read one by one where the order matters).
        let v: Vec<i32> = decode_dated(&answer(b"[1, 2]", Some(1), true)).unwrap();
        assert_eq!(v, vec![1, 2]);
    }

    #[test]
    fn a_replayed_answer_says_so() {
        let body = br#"{"id": "cus_1", "object": "customer"}"#;
        let c: crate::stripe::Customer = decode_dated(&answer(body, None, true)).unwrap();
        assert!(c.replayed);
        let c: crate::stripe::Customer = decode_dated(&answer(body, Some(1), false)).unwrap();
        assert!(!c.replayed);
    }

    #[test]
    fn idempotency_keys_fit_stripes_limit() {
        assert_eq!(
            idempotency_key_for("invoice:acme:2026-11:create"),
            "invoice:acme:2026-11:create"
        );
        let long = format!("webhook:{}", "invoice.payment_failed,".repeat(30));
        let sent = idempotency_key_for(&long);
        assert_eq!(sent.len(), 255);
        assert!(sent.starts_with("webhook:invoice.payment_failed,"));
        // Two long keys that share the prefix stay distinct.
        let other = format!("{long}x");
        assert_ne!(idempotency_key_for(&other), sent);
        // The same key always gives the same digest: a retry is the same write.
        assert_eq!(idempotency_key_for(&long), sent);
        assert_eq!(idempotency_key_for("").len(), 65);
        // Multi-byte characters are never split.
        let wide = "é".repeat(300);
        assert!(idempotency_key_for(&wide).len() <= 255);
    }
}
