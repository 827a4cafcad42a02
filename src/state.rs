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
    /// Events per second per token on `POST /api/usage/events` (off when the setting is 0).
    pub usage_limit: crate::usage::limit::EventLimiter,
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
                ..Default::default()
            },
        );
        AppState(Arc::new(Inner {
            usage: crate::usage::batcher::Batcher::new(db.clone(), settings.billing_timezone),
            usage_limit: crate::usage::limit::EventLimiter::new(
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
