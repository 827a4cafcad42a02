//! The state every handler shares.

use crate::config::{Secret, Settings};
use crate::db::Db;
use std::ops::Deref;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// The HS256 secret tokens are verified with (required to start).
    pub jwt_secret: Secret,
    /// Stores usage events, combining concurrent small requests into one transaction.
    pub usage: crate::usage::batcher::Batcher,
    /// `USAGE_EVENTS_PER_SECOND_PER_TOKEN`.
    pub usage_limit: crate::usage::limit::RateLimit,
}

impl AppState {
    pub fn new(db: Db, settings: Arc<Settings>, jwt_secret: Secret) -> AppState {
        AppState(Arc::new(Inner {
            usage: crate::usage::batcher::Batcher::new(db.clone(), settings.billing_timezone),
            usage_limit: crate::usage::limit::RateLimit::new(
                settings.usage_events_per_second_per_token,
            ),
            db,
            settings,
            jwt_secret,
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
