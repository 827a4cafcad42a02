//! Drives the simulator over HTTP, as a Stripe client would.

mod checkout;
mod clock;
mod collection;
mod common;
mod conformance;
mod control;
mod invoices;
mod protocol;
mod resources;
mod strict;
mod webhooks;
