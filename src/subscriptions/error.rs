//! What the subscription services refuse, in their own words. Each variant's text is the sentence a
//! person reads (the API's `detail`, the page's notice); `crate::http::error` decides the HTTP status.

use crate::stripe::StripeError;

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("No tenant has the id {0:?}.")]
    TenantNotFound(String),
    #[error("{field}: give an absolute http(s) URL of at most 2,048 characters.")]
    InvalidUrl { field: &'static str },
    /// Trials are policy: `who` says whose limit applies ("an organization admin may ask for").
    #[error(
        "trial_days: {who} at most {max} days of free trial; give a whole number from 0 to {max}."
    )]
    TrialTooLong { who: &'static str, max: u32 },
    #[error("trial_days: only an organization's first subscription has a free trial, and this organization has subscribed before; leave trial_days out or set it to 0.")]
    TrialAfterEarlierSubscription,
    #[error("This is a demo account and is exempt from billing charges; it cannot subscribe.")]
    DemoAccount,
    #[error("The organization already has a subscription ({id}, {status}); manage it in the customer portal.")]
    AlreadySubscribed { id: String, status: String },
    #[error("The monthly price is not configured: the operator must run `thanotopolis-billing stripe setup` and set STRIPE_MONTHLY_PRICE_ID.")]
    PriceNotConfigured,
    #[error("Another checkout for this organization is being opened at this moment; reload the page to continue with it.")]
    CheckoutInProgress,
    #[error("No Stripe customer found: the organization must complete checkout first.")]
    NoStripeCustomer,
    #[error("The organization has no active subscription to cancel.")]
    NoActiveSubscription,
    #[error("The organization has no subscription pending cancellation.")]
    NoPendingCancellation,
    /// Boxed: Stripe's error is large, and every result of these services carries the variant.
    #[error(transparent)]
    Stripe(Box<StripeError>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A broken invariant (Stripe answered without what it always sends): logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<SyncError> for SubscriptionError {
    fn from(e: SyncError) -> SubscriptionError {
        match e {
            SyncError::Stripe(e) => SubscriptionError::Stripe(Box::new(e)),
            SyncError::Db(e) => SubscriptionError::Db(e),
        }
    }
}

impl From<StripeError> for SubscriptionError {
    fn from(e: StripeError) -> SubscriptionError {
        SubscriptionError::Stripe(Box::new(e))
    }
}

pub type SubscriptionResult<T> = Result<T, SubscriptionError>;

/// Why a sync from Stripe failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}
