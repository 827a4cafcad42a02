//! One error type for every HTTP answer: `{"detail": "<sentence>", "code": "<snake_case>"}`.
//!
//! Internal causes are logged with the request's span and never reach the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds to wait before retrying, sent as `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
    /// The hidden cause of a 5xx, for the log only.
    source: Option<anyhow::Error>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Body<'a> {
    /// A sentence for people: what went wrong and what to do.
    detail: &'a str,
    /// A stable snake_case code for programs.
    #[schema(example = "not_authenticated")]
    code: &'a str,
}

// Documented under the name the error responses use: `ApiError`, the wire shape of this type.
impl utoipa::PartialSchema for ApiError {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Body as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for ApiError {
    fn name() -> std::borrow::Cow<'static, str> {
        "ApiError".into()
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            source: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authenticated", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// A dependency (the database, Stripe) is unavailable; the client may retry.
    pub fn unavailable(detail: impl Into<String>, cause: impl Into<anyhow::Error>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            detail,
        );
        e.retry_after = Some(5);
        e.source = Some(cause.into());
        e
    }

    /// The same error under another stable code.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    /// Something went wrong inside: logged in full, answered with a sentence that reveals nothing.
    pub fn internal(cause: impl Into<anyhow::Error>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; it has been logged. Please retry shortly.",
        );
        e.source = Some(cause.into());
        e
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.source {
            tracing::error!(status = self.status.as_u16(), code = self.code, error = ?cause, "request failed");
        }
        let body = serde_json::to_vec(&Body {
            detail: &self.detail,
            code: self.code,
        })
        .expect("error body serializes");
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                ApiError::unavailable("The database is unavailable; please retry shortly.", e)
            }
            _ => ApiError::internal(e),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body, parsed whatever the content type says, whose problems become a 422 that names
/// the field and what is wrong (axum's own rejection is plain text).
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiBody(bytes) = ApiBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A request body as bytes, for a route that decodes it itself; a body over the limit is a 413 in the
/// error shape.
pub struct ApiBody(pub axum::body::Bytes);

impl<S> axum::extract::FromRequest<S> for ApiBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(ApiBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "The request body is too large; send smaller batches.",
                    )
                } else {
                    ApiError::bad_request("invalid_body", "The request body could not be read.")
                }
            })
    }
}

/// A query string parsed into `T`, whose problems become a 422 in the error shape (axum's own
/// rejection is a plain-text 400).
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e| {
                ApiError::unprocessable(
                    "invalid_query",
                    format!(
                        "The query string does not match the expected shape: {}.",
                        e.body_text()
                    ),
                )
            })
    }
}

/// Path parameters parsed into `T`, whose problems (e.g. bytes that are not UTF-8) become a 422 in
/// the error shape.
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        <axum::extract::Path<T> as axum::extract::FromRequestParts<S>>::from_request_parts(
            parts, state,
        )
        .await
        .map(|axum::extract::Path(p)| ApiPath(p))
        .map_err(|e| {
            ApiError::unprocessable(
                "invalid_path",
                format!("The URL path is not valid: {}.", e.body_text()),
            )
        })
    }
}

/// A JSON number that is a whole number: `3` or `3.0` (JSON does not tell them apart, and JSON Schema's
/// `integer` accepts both).
pub fn as_whole_number(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        // Within ±2^53 every whole f64 is exact, so the conversion below is too.
        (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
    })
}

/// Deserializes an optional whole number that a client may have written as `25.0`.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::{Deserialize, Error};
    let v = Option::<serde_json::Value>::deserialize(deserializer)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => as_whole_number(&v)
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a whole number in range, got {v}"))),
    }
}

/// Parses a JSON body into `T`, or a 422 with serde's description of the first problem and where it is.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::unprocessable(
            "invalid_json",
            "The request body is empty; send a JSON object.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        let what = if err.is_syntax() || err.is_eof() {
            "is not valid JSON"
        } else {
            "does not match the expected shape"
        };
        ApiError::unprocessable("invalid_json", format!("The request body {what}: {err}."))
    })
}

impl From<crate::stripe::StripeError> for ApiError {
    fn from(e: crate::stripe::StripeError) -> ApiError {
        use crate::stripe::StripeError;
        match &e {
            StripeError::NotConfigured => ApiError::unavailable(
                "Billing is not connected to Stripe yet: the operator must set STRIPE_SECRET_KEY.",
                e,
            )
            .with_code("stripe_not_configured"),
            StripeError::Api {
                status: 402,
                message,
                ..
            } => {
                let detail = format!("The payment was declined: {message}");
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "payment_declined", detail)
            }
            _ => ApiError::unavailable(
                "Stripe could not be reached or refused the request; please retry shortly.",
                e,
            )
            .with_code("stripe_unavailable"),
        }
    }
}

impl From<crate::subscriptions::sync::SyncError> for ApiError {
    fn from(e: crate::subscriptions::sync::SyncError) -> ApiError {
        match e {
            crate::subscriptions::sync::SyncError::Stripe(e) => e.into(),
            crate::subscriptions::sync::SyncError::Db(e) => e.into(),
        }
    }
}
