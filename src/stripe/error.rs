//! What can go wrong talking to Stripe, typed so callers can decide to retry, report or give up.

use std::fmt;

#[derive(Debug, Clone)]
pub enum StripeError {
    /// Stripe answered with its error envelope.
    Api {
        status: u16,
        /// `invalid_request_error`, `card_error`, `idempotency_error`, `api_error`, ...
        kind: String,
        code: Option<String>,
        message: String,
        param: Option<String>,
        request_id: Option<String>,
        /// Stripe's `Stripe-Should-Retry` header, when sent.
        should_retry: Option<bool>,
    },
    /// No answer: connection refused or reset, DNS, TLS. The request may or may not have been applied.
    Network(String),
    /// No answer within the timeout. The request may or may not have been applied.
    Timeout,
    /// An answer we could not read as the expected object.
    Decode(String),
    /// No Stripe key is configured.
    NotConfigured,
}

impl StripeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            StripeError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            StripeError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether sending the same request again (with the same idempotency key) may succeed.
    /// 400 and 409 never are: the request itself is wrong or conflicts.
    pub fn is_retryable(&self) -> bool {
        match self {
            StripeError::Api {
                status,
                should_retry,
                ..
            } => {
                if matches!(status, 400 | 409) {
                    return false;
                }
                match should_retry {
                    Some(explicit) => *explicit,
                    None => *status == 429 || *status >= 500,
                }
            }
            StripeError::Network(_) | StripeError::Timeout => true,
            StripeError::Decode(_) | StripeError::NotConfigured => false,
        }
    }

    /// `resource_missing`: the object does not exist (404).
    pub fn is_missing(&self) -> bool {
        self.status() == Some(404) || self.code() == Some("resource_missing")
    }
}

impl fmt::Display for StripeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StripeError::Api {
                status,
                kind,
                code,
                message,
                ..
            } => {
                write!(f, "Stripe answered {status} {kind}")?;
                if let Some(code) = code {
                    write!(f, " ({code})")?;
                }
                write!(f, ": {message}")
            }
            StripeError::Network(e) => write!(f, "Stripe is unreachable: {e}"),
            StripeError::Timeout => write!(f, "Stripe did not answer in time"),
            StripeError::Decode(e) => write!(f, "Stripe's answer could not be read: {e}"),
            StripeError::NotConfigured => {
                write!(f, "Stripe is not configured: set STRIPE_SECRET_KEY")
            }
        }
    }
}

impl std::error::Error for StripeError {}
