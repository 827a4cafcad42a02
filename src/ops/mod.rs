//! Operator commands and what they set up: `stripe setup` (products, price, portal, webhook endpoint;
//! the warning `serve` gives when the endpoint lacks events), `stripe check` (the account and our
//! client against it, with the collection paths), `stripe sync` (our copy rebuilt from Stripe), and
//! `serve --stripe-sim`'s simulator, set up and seeded (`simulator`).

pub mod simulator;
pub mod stripe_check;
mod stripe_check_collection;
pub mod stripe_setup;
pub mod stripe_sync;
