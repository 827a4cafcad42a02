//! One error type for every HTTP answer: `{"detail": "<sentence>", "code": "<snake_case>"}`.
//!
//! Internal causes are logged with the request's span and never reach the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every code an error answer carries: stable, for programs. The OpenAPI document lists them from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body is over the size limit.
    BodyTooLarge,
    /// Another checkout of the organization is being opened at this moment.
    CheckoutInProgress,
    /// A demo account cannot subscribe.
    DemoAccount,
    /// A valid token without the right to do this.
    Forbidden,
    /// Something failed on our side (logged; nothing revealed).
    InternalError,
    /// The request body could not be read.
    InvalidBody,
    /// A webhook event that is not a Stripe event.
    InvalidEvent,
    /// `is_demo` is not `true` or `false`.
    InvalidIsDemo,
    /// The body is not valid JSON, or not of the expected shape.
    InvalidJson,
    /// `limit` is out of range.
    InvalidLimit,
    /// `month` is not a YYYY-MM month.
    InvalidMonth,
    /// A path parameter could not be read.
    InvalidPath,
    /// `period` is not a YYYY-MM month.
    InvalidPeriod,
    /// The query string could not be read.
    InvalidQuery,
    /// A usage batch with an invalid event (each named in `detail`); nothing of it is stored.
    InvalidUsageEvents,
    /// A webhook whose Stripe-Signature does not verify.
    InvalidSignature,
    /// A tenant to add is invalid.
    InvalidTenant,
    /// `tenant_id` is not a valid tenant id.
    InvalidTenantId,
    /// `trial_days` is over the allowed maximum, or the organization subscribed before.
    InvalidTrialDays,
    /// A URL is not an absolute http(s) URL.
    InvalidUrl,
    /// No subscription to cancel.
    NoActiveSubscription,
    /// No subscription pending cancellation.
    NoPendingCancellation,
    /// The organization has no Stripe customer yet.
    NoStripeCustomer,
    /// A missing, malformed, expired or foreign token.
    NotAuthenticated,
    /// No such route in the API.
    NotFound,
    /// The payment method declined.
    PaymentDeclined,
    /// The period has not ended yet.
    PeriodNotClosed,
    /// Over the rate limit; retry after `Retry-After`.
    RateLimited,
    /// A run of the period is already in progress.
    RunInProgress,
    /// No run has that id.
    RunNotFound,
    /// A dependency (the database, Stripe) is unavailable; retry.
    ServiceUnavailable,
    /// Billing is not connected to Stripe yet.
    StripeNotConfigured,
    /// Stripe could not be reached or refused the request.
    StripeUnavailable,
    /// The organization already has a live subscription.
    SubscriptionExists,
    /// A tenant with that id or subdomain exists.
    TenantExists,
    /// No tenant has that id.
    TenantNotFound,
    /// No subscription plan has that id.
    UnknownPlan,
    /// Applying a webhook event failed; Stripe retries it.
    WebhookFailed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::CheckoutInProgress => "checkout_in_progress",
            ErrorCode::DemoAccount => "demo_account",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::InvalidIsDemo => "invalid_is_demo",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidLimit => "invalid_limit",
            ErrorCode::InvalidMonth => "invalid_month",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidPeriod => "invalid_period",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::InvalidUsageEvents => "invalid_usage_events",
            ErrorCode::InvalidTenant => "invalid_tenant",
            ErrorCode::InvalidTenantId => "invalid_tenant_id",
            ErrorCode::InvalidTrialDays => "invalid_trial_days",
            ErrorCode::InvalidUrl => "invalid_url",
            ErrorCode::NoActiveSubscription => "no_active_subscription",
            ErrorCode::NoPendingCancellation => "no_pending_cancellation",
            ErrorCode::NoStripeCustomer => "no_stripe_customer",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PaymentDeclined => "payment_declined",
            ErrorCode::PeriodNotClosed => "period_not_closed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RunInProgress => "run_in_progress",
            ErrorCode::RunNotFound => "run_not_found",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::StripeNotConfigured => "stripe_not_configured",
            ErrorCode::StripeUnavailable => "stripe_unavailable",
            ErrorCode::SubscriptionExists => "subscription_exists",
            ErrorCode::TenantExists => "tenant_exists",
            ErrorCode::TenantNotFound => "tenant_not_found",
            ErrorCode::UnknownPlan => "unknown_plan",
            ErrorCode::WebhookFailed => "webhook_failed",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
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
    #[schema(inline)]
    code: ErrorCode,
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
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            source: None,
        }
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::NotAuthenticated,
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail)
    }

    pub fn not_found(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unprocessable(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            detail,
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// A dependency (the database, Stripe) is unavailable; the client may retry.
    pub fn unavailable(detail: impl Into<String>, cause: impl Into<anyhow::Error>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            detail,
        );
        e.retry_after = Some(5);
        e.source = Some(cause.into());
        e
    }

    /// The same error under another stable code.
    pub fn with_code(mut self, code: ErrorCode) -> ApiError {
        self.code = code;
        self
    }

    /// Something went wrong inside: logged in full, answered with a sentence that reveals nothing.
    pub fn internal(cause: impl Into<anyhow::Error>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
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
            tracing::error!(status = self.status.as_u16(), code = self.code.as_str(), error = ?cause, "request failed");
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

impl From<crate::stripe::StripeError> for ApiError {
    fn from(e: crate::stripe::StripeError) -> ApiError {
        use crate::stripe::StripeError;
        match &e {
            StripeError::NotConfigured => ApiError::unavailable(
                "Billing is not connected to Stripe yet: the operator must set STRIPE_SECRET_KEY.",
                e,
            )
            .with_code(ErrorCode::StripeNotConfigured),
            StripeError::Api {
                status: 402,
                message,
                ..
            } => {
                let detail = format!("The payment was declined: {message}");
                ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    ErrorCode::PaymentDeclined,
                    detail,
                )
            }
            _ => ApiError::unavailable(
                "Stripe could not be reached or refused the request; please retry shortly.",
                e,
            )
            .with_code(ErrorCode::StripeUnavailable),
        }
    }
}

impl From<crate::subscriptions::error::SyncError> for ApiError {
    fn from(e: crate::subscriptions::error::SyncError) -> ApiError {
        match e {
            crate::subscriptions::error::SyncError::Stripe(e) => e.into(),
            crate::subscriptions::error::SyncError::Db(e) => e.into(),
        }
    }
}

impl From<crate::subscriptions::SubscriptionError> for ApiError {
    fn from(e: crate::subscriptions::SubscriptionError) -> ApiError {
        use crate::subscriptions::SubscriptionError as E;
        let detail = e.to_string();
        match e {
            E::TenantNotFound(_) => ApiError::not_found(ErrorCode::TenantNotFound, detail),
            E::InvalidUrl { .. } => ApiError::unprocessable(ErrorCode::InvalidUrl, detail),
            E::TrialTooLong { .. } | E::TrialAfterEarlierSubscription => {
                ApiError::unprocessable(ErrorCode::InvalidTrialDays, detail)
            }
            E::DemoAccount => ApiError::forbidden(detail).with_code(ErrorCode::DemoAccount),
            E::AlreadySubscribed { .. } => {
                ApiError::conflict(ErrorCode::SubscriptionExists, detail)
            }
            E::PriceNotConfigured => {
                ApiError::unavailable(detail, e).with_code(ErrorCode::StripeNotConfigured)
            }
            E::CheckoutInProgress => ApiError::conflict(ErrorCode::CheckoutInProgress, detail),
            E::NoStripeCustomer => ApiError::not_found(ErrorCode::NoStripeCustomer, detail),
            E::NoActiveSubscription => ApiError::not_found(ErrorCode::NoActiveSubscription, detail),
            E::NoPendingCancellation => {
                ApiError::not_found(ErrorCode::NoPendingCancellation, detail)
            }
            E::Stripe(e) => (*e).into(),
            E::Db(e) => e.into(),
            E::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::billing::start::StartError> for ApiError {
    fn from(e: crate::billing::start::StartError) -> ApiError {
        use crate::billing::start::StartError as E;
        let detail = e.to_string();
        match e {
            E::InvalidPeriod(_) => ApiError::unprocessable(ErrorCode::InvalidPeriod, detail),
            E::PeriodNotClosed { .. } => {
                ApiError::unprocessable(ErrorCode::PeriodNotClosed, detail)
            }
            E::InProgress(_) => ApiError::conflict(ErrorCode::RunInProgress, detail),
            E::Db(e) => e.into(),
        }
    }
}

impl From<crate::dashboard::DashboardError> for ApiError {
    fn from(e: crate::dashboard::DashboardError) -> ApiError {
        use crate::dashboard::DashboardError as E;
        let detail = e.to_string();
        match e {
            E::TenantNotFound(_) => ApiError::not_found(ErrorCode::TenantNotFound, detail),
            E::Db(e) => e.into(),
        }
    }
}
