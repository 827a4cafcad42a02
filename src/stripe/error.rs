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
        /// `Idempotent-Replayed: true`: the answer saved under the idempotency key, which Stripe gives
        /// again to every retry with that key for 24 hours.
        replayed: bool,
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

    /// Stripe's error `type` (`invalid_request_error`, `idempotency_error`, ...).
    pub fn kind(&self) -> Option<&str> {
        match self {
            StripeError::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            StripeError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether Stripe refuses a payment for good, whatever is tried again with it: a 400 (no payment
    /// method left, a mandate no longer valid, an idempotency conflict), a 402 it will not take back, or a
    /// 404. A 401 or 403 is our key's problem, and a 409, 429 or 5xx a passing one: not the invoice's.
    pub fn refuses_payment(&self) -> bool {
        matches!(self.status(), Some(400 | 402 | 404)) && !self.is_retryable()
    }

    /// Whether sending the same request again (with the same idempotency key) may succeed. As Stripe's
    /// own clients decide (stripe-node `RequestSender._shouldRetry`, stripe-python `_should_retry`):
    /// `Stripe-Should-Retry` first; without it 409 (`lock_timeout`, the same key in flight), 429 and
    /// 5xx are retried and every other 4xx is final. A replayed answer is final whatever it says: the
    /// same key only gets it again.
    pub fn is_retryable(&self) -> bool {
        match self {
            StripeError::Api {
                status,
                should_retry,
                replayed,
                ..
            } => {
                if *replayed {
                    return false;
                }
                match should_retry {
                    Some(explicit) => *explicit,
                    None => matches!(status, 409 | 429) || *status >= 500,
                }
            }
            StripeError::Network(_) | StripeError::Timeout => true,
            StripeError::Decode(_) | StripeError::NotConfigured => false,
        }
    }

    /// Stripe failed on its side (5xx) and saved that answer under the key: the write may or may not have
    /// been applied, and retrying under the same key cannot succeed for a day. The caller looks in
    /// Stripe for what the write would have made and, if it is not there, writes under a fresh key.
    pub fn is_saved_server_error(&self) -> bool {
        matches!(self, StripeError::Api { status, replayed: true, .. } if *status >= 500)
    }

    /// Stripe answered 5xx: the outcome of a write is unknown, and the answer may be saved under its key.
    pub fn is_server_error(&self) -> bool {
        self.status().is_some_and(|s| s >= 500)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, should_retry: Option<bool>, replayed: bool) -> StripeError {
        StripeError::Api {
            status,
            kind: "api_error".into(),
            code: None,
            message: String::new(),
            param: None,
            request_id: None,
            should_retry,
            replayed,
        }
    }

    #[test]
    fn retries_as_stripes_own_clients_do() {
        // Without the header: 409, 429 and 5xx are retried, other 4xx are final.
        assert!(api(409, None, false).is_retryable());
        assert!(api(429, None, false).is_retryable());
        assert!(api(500, None, false).is_retryable());
        assert!(api(503, None, false).is_retryable());
        for status in [400, 401, 402, 403, 404] {
            assert!(!api(status, None, false).is_retryable(), "{status}");
        }
        // The header wins both ways.
        assert!(!api(500, Some(false), false).is_retryable());
        assert!(api(400, Some(true), false).is_retryable());
        assert!(!api(409, Some(false), false).is_retryable());
        // A saved answer replayed is final: the same key gets the same answer.
        assert!(!api(500, Some(true), true).is_retryable());
        assert!(api(500, None, true).is_saved_server_error());
        assert!(!api(500, None, false).is_saved_server_error());
        assert!(StripeError::Timeout.is_retryable());
    }
}
