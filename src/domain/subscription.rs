//! A subscription's state, as Stripe words it: read by storage, the services and the pages alike.

/// A subscription's state (Stripe's `status`). Our copy keeps Stripe's word; code reads it through this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Paused,
    /// A state this version does not know (Stripe adds states rarely; treated as not live).
    Other,
}

impl SubscriptionStatus {
    pub fn parse(status: &str) -> SubscriptionStatus {
        match status {
            "incomplete" => SubscriptionStatus::Incomplete,
            "incomplete_expired" => SubscriptionStatus::IncompleteExpired,
            "trialing" => SubscriptionStatus::Trialing,
            "active" => SubscriptionStatus::Active,
            "past_due" => SubscriptionStatus::PastDue,
            "canceled" => SubscriptionStatus::Canceled,
            "unpaid" => SubscriptionStatus::Unpaid,
            "paused" => SubscriptionStatus::Paused,
            _ => SubscriptionStatus::Other,
        }
    }

    /// Still standing: paid for, or to be asked for payment.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active
                | SubscriptionStatus::Trialing
                | SubscriptionStatus::PastDue
                | SubscriptionStatus::Incomplete
                | SubscriptionStatus::Unpaid
        )
    }

    /// Counted in MRR: paying or owing, not in a free trial.
    pub fn is_recurring_revenue(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
        )
    }
}
