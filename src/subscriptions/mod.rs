//! The subscription side: each tenant's one Stripe customer, our copy of subscriptions and invoices, and
//! the webhooks that keep that copy true.

pub mod access;
pub mod customer;
pub mod duplicates;
pub mod payment_method;
pub mod sync;
pub mod webhook;
