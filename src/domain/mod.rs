//! Validated domain types and plain values: money, identifiers, billing periods, a subscription's
//! state, a payment method as a person recognizes it.

mod ids;
pub mod json;
mod money;
mod payment_method;
mod period;
mod subscription;
pub mod time;

pub use ids::{Subdomain, TenantId};
pub use money::{group_thousands, Cents};
pub use payment_method::PaymentMethodView;
pub use period::{local_midnight, BillingPeriod};
pub use subscription::SubscriptionStatus;
