//! Whether a tenant may use the platform now, from its billing state: the answer the platform gates its
//! features on (`GET /api/billing/access`). Read from our copy only, so it is cheap and never waits on Stripe.

use crate::db::{self, subscriptions::SubscriptionRow, Db};
use crate::domain::SubscriptionStatus as Status;
use crate::domain::TenantId;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Why access is allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessReason {
    /// A demo account: full platform access, never billed.
    Demo,
    /// Inside the subscription's trial.
    Trialing,
    /// Paid up and renewing.
    Active,
    /// Set to cancel: access stays until the period ends.
    Canceling,
    /// A payment failed: access stays for the grace days after the first failure.
    PastDue,
    /// The bank asks the customer to confirm a payment (3-D Secure): access stays for the same grace
    /// days as `past_due`.
    ActionRequired,
    /// Unpaid past the grace days, or paused by Stripe.
    Suspended,
    /// The subscription ended.
    Canceled,
    /// The tenant never subscribed (or its first payment never went through).
    #[serde(rename = "none")]
    NoSubscription,
}

/// The access answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub allowed: bool,
    pub reason: AccessReason,
    /// When access ends without a further change; `None` when open-ended (or already refused).
    pub until: Option<DateTime<Utc>>,
}

impl Access {
    fn open(reason: AccessReason) -> Access {
        Access {
            allowed: true,
            reason,
            until: None,
        }
    }

    fn refused(reason: AccessReason) -> Access {
        Access {
            allowed: false,
            reason,
            until: None,
        }
    }

    /// Allowed until `until`; refused with `after` once it has passed.
    fn until(
        reason: AccessReason,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        after: AccessReason,
    ) -> Access {
        if now < until {
            Access {
                allowed: true,
                reason,
                until: Some(until),
            }
        } else {
            Access::refused(after)
        }
    }
}

/// What a past-due tenant's failed payments say: when the first failed, and whether the bank asks the
/// customer to confirm one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    /// The first failed payment of an invoice still unpaid (`None` when no failure was recorded).
    pub first: Option<DateTime<Utc>>,
    pub action_required: bool,
}

/// What access follows from a tenant's state. Pure: `failures` are those of invoices still unpaid,
/// `grace` how long past_due (and action_required) keeps access.
pub fn decide(
    is_demo: bool,
    subscription: Option<&SubscriptionRow>,
    failures: Failures,
    grace: Duration,
    now: DateTime<Utc>,
) -> Access {
    use AccessReason::*;
    if is_demo {
        return Access::open(Demo);
    }
    let Some(sub) = subscription else {
        return Access::refused(NoSubscription);
    };
    if sub.ended_at.is_some() {
        return Access::refused(Canceled);
    }
    let period_end = sub.current_period_end;
    match sub.state() {
        Status::Active | Status::Trialing if sub.cancel_at_period_end => match period_end {
            Some(end) => Access::until(Canceling, end, now, Canceled),
            None => Access::open(Canceling),
        },
        Status::Trialing => match sub.trial_end.or(period_end) {
            Some(end) => Access::until(Trialing, end, now, Suspended),
            None => Access::open(Trialing),
        },
        Status::Active => Access::open(Active),
        Status::PastDue => {
            // Without a recorded failure (its webhook not yet here), the renewal the payment was for
            // started the period.
            let failed = failures.first.or(sub.current_period_start).unwrap_or(now);
            let reason = if failures.action_required {
                ActionRequired
            } else {
                PastDue
            };
            Access::until(reason, failed + grace, now, Suspended)
        }
        Status::Unpaid | Status::Paused => Access::refused(Suspended),
        Status::Canceled => Access::refused(Canceled),
        // Incomplete, expired incomplete: the first payment never went through.
        Status::Incomplete | Status::IncompleteExpired | Status::Other => {
            Access::refused(NoSubscription)
        }
    }
}

/// The tenant's access now, from our copy of its state; `None` when the tenant is unknown.
pub async fn for_tenant(
    db: &Db,
    tenant: &TenantId,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Access>, sqlx::Error> {
    let Some(state) = db::subscriptions::access_state(db, tenant).await? else {
        return Ok(None);
    };
    let failures = Failures {
        first: state.first_failure,
        action_required: state.action_required,
    };
    Ok(Some(decide(
        state.is_demo,
        state.subscription.as_ref(),
        failures,
        grace,
        now,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 0, 0, 0).unwrap()
    }

    fn sub(status: &str) -> SubscriptionRow {
        SubscriptionRow {
            stripe_subscription_id: "sub_1".into(),
            tenant_id: "t".into(),
            stripe_customer_id: "cus_1".into(),
            status: status.into(),
            price_id: None,
            amount_cents: 29_900,
            currency: "usd".into(),
            current_period_start: Some(t(1)),
            current_period_end: Some(t(30)),
            trial_start: None,
            trial_end: None,
            cancel_at_period_end: false,
            canceled_at: None,
            ended_at: None,
            stripe_created_at: t(1),
            stripe_updated_at: t(1),
        }
    }

    fn at(s: &SubscriptionRow, failure: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Access {
        let failures = Failures {
            first: failure,
            action_required: false,
        };
        decide(false, Some(s), failures, Duration::days(7), now)
    }

    #[test]
    fn each_state_has_its_answer() {
        use AccessReason::*;
        let now = t(10);
        assert_eq!(
            decide(true, None, Failures::default(), Duration::days(7), now),
            Access::open(Demo)
        );
        assert_eq!(
            decide(false, None, Failures::default(), Duration::days(7), now),
            Access::refused(NoSubscription)
        );
        assert_eq!(at(&sub("active"), None, now), Access::open(Active));

        let mut trial = sub("trialing");
        trial.trial_end = Some(t(15));
        let a = at(&trial, None, now);
        assert_eq!(
            (a.allowed, a.reason, a.until),
            (true, Trialing, Some(t(15)))
        );

        let mut canceling = sub("active");
        canceling.cancel_at_period_end = true;
        let a = at(&canceling, None, now);
        assert_eq!(
            (a.allowed, a.reason, a.until),
            (true, Canceling, Some(t(30)))
        );
        // Past the period end with the deletion not yet mirrored: no longer allowed.
        let a = at(&canceling, None, t(30));
        assert_eq!((a.allowed, a.reason), (false, Canceled));

        let mut ended = sub("canceled");
        ended.ended_at = Some(t(5));
        assert_eq!(at(&ended, None, now), Access::refused(Canceled));
        assert_eq!(at(&sub("unpaid"), None, now), Access::refused(Suspended));
        assert_eq!(at(&sub("paused"), None, now), Access::refused(Suspended));
        assert_eq!(
            at(&sub("incomplete"), None, now),
            Access::refused(NoSubscription)
        );
    }

    #[test]
    fn past_due_keeps_access_for_the_grace_days_after_the_first_failure() {
        use AccessReason::*;
        let s = sub("past_due");
        let a = at(&s, Some(t(5)), t(11));
        assert_eq!((a.allowed, a.reason, a.until), (true, PastDue, Some(t(12))));
        let a = at(&s, Some(t(5)), t(12));
        assert_eq!((a.allowed, a.reason, a.until), (false, Suspended, None));
        // No failure recorded yet: counted from the start of the period the payment was for.
        let a = at(&s, None, t(7));
        assert_eq!((a.allowed, a.until), (true, Some(t(8))));
    }

    #[test]
    fn a_payment_waiting_for_the_customers_confirmation_has_the_same_grace() {
        use AccessReason::*;
        let s = sub("past_due");
        let waiting = Failures {
            first: Some(t(5)),
            action_required: true,
        };
        let a = decide(false, Some(&s), waiting, Duration::days(7), t(11));
        assert_eq!(
            (a.allowed, a.reason, a.until),
            (true, ActionRequired, Some(t(12)))
        );
        let a = decide(false, Some(&s), waiting, Duration::days(7), t(12));
        assert_eq!((a.allowed, a.reason), (false, Suspended));
        // An active subscription is active, whatever a usage invoice waits for.
        let a = decide(
            false,
            Some(&sub("active")),
            waiting,
            Duration::days(7),
            t(11),
        );
        assert_eq!(a.reason, Active);
    }
}
