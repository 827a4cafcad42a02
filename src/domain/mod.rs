//! Validated domain types: money, identifiers, billing periods.

mod ids;
mod money;
mod period;
pub mod time;

pub use ids::{Subdomain, TenantId};
pub use money::{group_thousands, Cents};
pub use period::{local_midnight, BillingPeriod};
