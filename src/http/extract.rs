//! Request extractors whose rejections are the API's errors (axum's own are plain text), and the
//! number helpers the request types share.

use crate::http::error::ApiError;
use crate::http::error::ErrorCode;
use axum::http::StatusCode;

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
                        ErrorCode::BodyTooLarge,
                        "The request body is too large; send smaller batches.",
                    )
                } else {
                    ApiError::bad_request(
                        ErrorCode::InvalidBody,
                        "The request body could not be read.",
                    )
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
                    ErrorCode::InvalidQuery,
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
                ErrorCode::InvalidPath,
                format!("The URL path is not valid: {}.", e.body_text()),
            )
        })
    }
}

/// Parses a JSON body into `T`, or a 422 with serde's description of the first problem and where it is.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::unprocessable(
            ErrorCode::InvalidJson,
            "The request body is empty; send a JSON object.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        let what = if err.is_syntax() || err.is_eof() {
            "is not valid JSON"
        } else {
            "does not match the expected shape"
        };
        ApiError::unprocessable(
            ErrorCode::InvalidJson,
            format!("The request body {what}: {err}."),
        )
    })
}
