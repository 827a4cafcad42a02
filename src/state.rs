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
    /// Per-object locks (a tenant's checkout, a Stripe object's copy).
    pub locks: Arc<crate::db::locks::Locks>,
    /// Work that outlives the request that started it (runs, Stripe writes and what records them).
    pub detached: crate::detached::Detached,
}

impl AppState {
    pub fn new(db: Db, settings: Arc<Settings>, jwt_secret: Secret) -> AppState {
        let stripe = crate::stripe::StripeClient::new(
            &settings.stripe.api_base,
            settings.stripe.secret_key.clone(),
            crate::stripe::ClientOptions::from_settings(&settings.stripe),
        );
        AppState(Arc::new(Inner {
            usage: crate::usage::batcher::Batcher::new(db.clone(), settings.billing.timezone),
            usage_limit: crate::usage::limit::EventLimiter::new(
                settings.usage.events_per_second_per_token,
            ),
            db,
            settings,
            jwt_secret,
            stripe,
            locks: Arc::default(),
            detached: crate::detached::Detached::default(),
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
