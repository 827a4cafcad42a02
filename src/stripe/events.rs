//! Stripe's event vocabulary, in our terms: which events we subscribe to and act on, and what an
//! event says beyond its object. Event type names stay here; callers ask `Event` what it is about.

use super::types::Event;
use serde_json::Value;

/// Event types we act on: the webhook endpoint `stripe setup` creates subscribes to exactly these.
pub const HANDLED: [&str; 11] = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.updated",
];

/// The type of the event that says a payment of an invoice failed (counted by the overview).
pub const PAYMENT_FAILED: &str = "invoice.payment_failed";

/// What a handled event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A Checkout session completed: a subscription may have been created for a tenant.
    CheckoutCompleted,
    /// A subscription changed (created, updated, deleted).
    Subscription,
    /// An invoice changed.
    Invoice,
}

impl Event {
    /// What the event is about, or None for a type we do not act on.
    pub fn topic(&self) -> Option<Topic> {
        let kind = self.event_type.as_str();
        if !HANDLED.contains(&kind) {
            None
        } else if kind == "checkout.session.completed" {
            Some(Topic::CheckoutCompleted)
        } else if kind.starts_with("customer.subscription.") {
            Some(Topic::Subscription)
        } else {
            Some(Topic::Invoice)
        }
    }

    /// The id of the object the event carries.
    pub fn object_id(&self) -> Option<&str> {
        self.data.object.get("id").and_then(Value::as_str)
    }

    /// Whether the change this event reports replaced the subscription's default payment method.
    pub fn changed_default_payment_method(&self) -> bool {
        self.data
            .previous_attributes
            .as_ref()
            .is_some_and(|p| p.get("default_payment_method").is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, previous: Option<Value>) -> Event {
        serde_json::from_value(serde_json::json!({
            "id": "evt_1", "type": kind, "created": 1, "api_version": null,
            "data": {"object": {"id": "obj_1"}, "previous_attributes": previous}
        }))
        .expect("event")
    }

    #[test]
    fn topics_follow_the_type() {
        assert_eq!(
            event("checkout.session.completed", None).topic(),
            Some(Topic::CheckoutCompleted)
        );
        assert_eq!(
            event("customer.subscription.deleted", None).topic(),
            Some(Topic::Subscription)
        );
        assert_eq!(event(PAYMENT_FAILED, None).topic(), Some(Topic::Invoice));
        assert_eq!(event("customer.subscription.paused", None).topic(), None);
        assert_eq!(event("plan.created", None).object_id(), Some("obj_1"));
    }

    #[test]
    fn a_new_default_payment_method_is_seen_in_previous_attributes() {
        let changed = serde_json::json!({"default_payment_method": null});
        assert!(
            event("customer.subscription.updated", Some(changed)).changed_default_payment_method()
        );
        let other = serde_json::json!({"status": "trialing"});
        assert!(
            !event("customer.subscription.updated", Some(other)).changed_default_payment_method()
        );
        assert!(!event("customer.subscription.updated", None).changed_default_payment_method());
    }
}
