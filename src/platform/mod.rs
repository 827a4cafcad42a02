//! The platform's own data, brought in without changing the platform's code (API.md, "The platform's data").
//!
//! - [`source`]: reading the platform's PostgreSQL (`tenants`, `usage_records`, `stripe_customers`);
//! - [`mapping`]: what a `usage_records` row is billed as (pure), with the platform's code it follows;
//! - [`organizations`]: its organizations registered here, names and demo changes followed;
//! - [`links`]: the platform's new `stripe_customers` rows linked here (an organization whose customer an
//!   operator recorded on the platform after the import);
//! - [`store`]: the follower's tables here (position, lease, held rows, organizations last applied);
//! - [`follow`]: the follower `serve` runs when `PLATFORM_DATABASE_URL` is set (`platform follow` alone);
//! - [`sweep`]: what the follower's sweep reads again (the open period, the previous one until billed);
//! - [`status`]: `platform status` and the `/metrics` gauges;
//! - [`import`]: `platform import`, moving a deployment over (organizations, Stripe customers, usage).

pub mod follow;
pub mod import;
pub mod links;
pub mod mapping;
pub mod organizations;
pub mod source;
pub mod status;
pub mod store;
pub mod sweep;

pub use follow::{Follower, Options};
pub use source::Source;
