//! Stripe's error envelope: `{"error": {"type", "code", "message", "param", ...}}`.

use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    /// Boxed: the error travels in every `Result` of the simulator, and is kept small.
    pub param: Option<Box<str>>,
    /// A decline's reason (`decline_code`), when it has one of its own.
    pub decline_code: Option<&'static str>,
    /// Extra headers Stripe sends with some errors (`Stripe-Should-Retry`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: None,
            message: message.into(),
            param: None,
            decline_code: None,
            headers: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The issuer's reason for a decline (`lost_card`, `insufficient_funds`, ...).
    pub fn decline(mut self, code: &'static str) -> Self {
        self.decline_code = Some(code);
        self
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into().into_boxed_str());
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_value(self, _v: String) -> Self {
        self
    }

    pub fn unknown_param(name: &str) -> Self {
        Self::invalid(format!("Received unknown parameter: {name}"))
            .code("parameter_unknown")
            .param(name)
    }

    pub fn missing_param(name: &str) -> Self {
        Self::invalid(format!("Missing required param: {name}."))
            .code("parameter_missing")
            .param(name)
    }

    /// `No such customer: 'cus_x'`, 404 `resource_missing`.
    pub fn no_such(kind: &str, id: &str, param: &str) -> Self {
        Self::invalid(format!("No such {kind}: '{id}'"))
            .status(404)
            .code("resource_missing")
            .param(param)
    }

    pub fn card_declined() -> Self {
        Self::new(402, "card_error", "Your card was declined.").code("card_declined")
    }

    pub fn server_error(status: u16) -> Self {
        Self::new(
            status,
            "api_error",
            "An unknown error occurred while processing your request. Please try again.",
        )
        .header("Stripe-Should-Retry", "true")
    }

    pub fn rate_limited() -> Self {
        Self::invalid(
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        )
        .status(429)
        .code("rate_limit")
        .header("Stripe-Should-Retry", "true")
    }

    /// Whether Stripe would store this result under an idempotency key: results are kept once
    /// the endpoint started executing, not for validation failures or concurrency conflicts.
    pub fn is_saved_for_idempotency(&self) -> bool {
        !(self.status == 429
            || self.status == 401
            || self.status == 409
            || self.code.is_some_and(|c| c.starts_with("parameter_")))
    }

    pub fn body(&self, request_id: &str) -> Value {
        let mut err = Map::new();
        err.insert("type".into(), json!(self.kind));
        err.insert("message".into(), json!(self.message));
        if let Some(code) = self.code {
            err.insert("code".into(), json!(code));
            err.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        if let Some(p) = &self.param {
            err.insert("param".into(), json!(p));
        }
        let decline = self.decline_code.or(match self.code {
            Some("card_declined") => Some("generic_decline"),
            Some("authentication_required") => Some("authentication_required"),
            _ => None,
        });
        if let Some(d) = decline {
            err.insert("decline_code".into(), json!(d));
        }
        err.insert(
            "request_log_url".into(),
            json!(format!(
                "https://dashboard.stripe.com/test/logs/{request_id}"
            )),
        );
        json!({ "error": Value::Object(err) })
    }
}
