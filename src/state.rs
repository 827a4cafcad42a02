//! The state every handler shares.

use crate::config::{Secret, Settings};
use crate::db::Db;
use crate::stripe::StripeClient;
use std::ops::Deref;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// The HS256 secret tokens are verified with (required to start).
    pub jwt_secret: Secret,
    pub stripe: StripeClient,
    /// Stores usage events, combining concurrent small requests into one transaction.
    pub usage: crate::usage::batcher::Batcher,
    /// `USAGE_EVENTS_PER_SECOND_PER_TOKEN`.
    pub usage_limit: crate::usage::limit::RateLimit,
}

impl AppState {
    pub fn new(db: Db, settings: Arc<Settings>, jwt_secret: Secret) -> AppState {
        let stripe = crate::stripe::StripeClient::new(
            &settings.stripe_api_base,
            settings.stripe_secret_key.clone(),
            crate::stripe::ClientOptions {
                max_requests_per_second: settings.stripe_max_requests_per_second,
                max_retries: settings.stripe_max_retries,
                base_backoff: std::time::Duration::from_millis(settings.stripe_retry_base_ms),
                timeout: std::time::Duration::from_millis(settings.stripe_timeout_ms.max(1)),
                ..Default::default()
            },
        );
        AppState(Arc::new(Inner {
            usage: crate::usage::batcher::Batcher::new(db.clone(), settings.billing_timezone),
            usage_limit: crate::usage::limit::RateLimit::new(
                settings.usage_events_per_second_per_token,
            ),
            db,
            settings,
            jwt_secret,
            stripe,
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
