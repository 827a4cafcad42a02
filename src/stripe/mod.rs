//! The one module that talks to Stripe: a typed HTTP client, the objects we read, webhook signatures.
//!
//! A thin client over reqwest rather than a full SDK: it parses only the fields we use and tolerates every
//! other field (Stripe adds fields without notice), builds quickly, and points at any Stripe-compatible
//! server through `STRIPE_API_BASE` (the simulator in tests and in the demo).

mod client;
mod error;
mod events;
pub mod gateway;
mod params;
mod ratelimit;
pub mod types;
pub mod webhook;

pub use client::{idempotency_key_for, ClientOptions, StripeClient};
pub use error::StripeError;
pub use events::{Topic, FOLLOW_KEY_PREFIX, HANDLED, PAYMENT_ACTION_REQUIRED, PAYMENT_FAILED};
pub use gateway::{
    Collected, Collection, InvoiceStatus, NewCheckout, Pause, UsageInvoice, UsageLine,
};
pub use params::Params;
pub use types::*;

/// The API version every request pins; the shapes in `types` follow it (periods on subscription items).
pub const STRIPE_VERSION: &str = "2025-08-27.basil";
