//! Stripe's event vocabulary, in our terms: which events we subscribe to and act on, and what an
//! event says beyond its object. Event type names stay here; callers ask `Event` what it is about.

use super::types::Event;
use serde_json::Value;

/// Event types we act on: the webhook endpoint `stripe setup` creates subscribes to exactly these.
pub const HANDLED: [&str; 13] = [
    "checkout.session.completed",
    "customer.updated",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.updated",
];

/// The type of the event that says a payment of an invoice failed (counted by the overview).
pub const PAYMENT_FAILED: &str = "invoice.payment_failed";

/// The type of the event that says the bank asks the customer to authenticate an invoice's payment.
pub const PAYMENT_ACTION_REQUIRED: &str = "invoice.payment_action_required";

/// The prefix of the idempotency keys of the writes that copy the tenant's chosen payment method
/// onto its customer and subscriptions: events those writes cause are ours, not the tenant's.
pub const FOLLOW_KEY_PREFIX: &str = "pm-follow:";

/// What a handled event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A Checkout session completed: a subscription may have been created for a tenant.
    CheckoutCompleted,
    /// A subscription changed (created, updated, deleted).
    Subscription,
    /// A customer changed (its invoice default payment method, say).
    Customer,
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
        } else if kind == "customer.updated" {
            Some(Topic::Customer)
        } else {
            Some(Topic::Invoice)
        }
    }

    /// The id of the object the event carries.
    pub fn object_id(&self) -> Option<&str> {
        self.data.object.get("id").and_then(Value::as_str)
    }

    /// The payment method a tenant set by the change this event reports, if it set one: a
    /// customer's new invoice default, a subscription's new default (the portal, the dashboard), or a
    /// new subscription's (Checkout). The event's own copy is used: it holds the value at the
    /// moment of the change, which `created` dates on Stripe's clock. Our own copying writes
    /// (`FOLLOW_KEY_PREFIX`) are not the tenant's changes.
    pub fn payment_method_set(&self) -> Option<&str> {
        let ours = self
            .request
            .as_ref()
            .and_then(|r| r.idempotency_key.as_deref())
            .is_some_and(|k| k.starts_with(FOLLOW_KEY_PREFIX));
        if ours {
            return None;
        }
        let previous = self.data.previous_attributes.as_ref();
        let object = &self.data.object;
        let value = match self.event_type.as_str() {
            "customer.updated" => {
                previous?
                    .get("invoice_settings")?
                    .get("default_payment_method")?;
                object
                    .get("invoice_settings")?
                    .get("default_payment_method")?
            }
            "customer.subscription.updated" => {
                previous?.get("default_payment_method")?;
                object.get("default_payment_method")?
            }
            "customer.subscription.created" => object.get("default_payment_method")?,
            _ => return None,
        };
        // An id, or the object when expanded.
        value
            .as_str()
            .or_else(|| value.get("id").and_then(Value::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, previous: Option<Value>) -> Event {
        event_with(kind, serde_json::json!({"id": "obj_1"}), previous, None)
    }

    fn event_with(kind: &str, object: Value, previous: Option<Value>, key: Option<&str>) -> Event {
        serde_json::from_value(serde_json::json!({
            "id": "evt_1", "type": kind, "created": 1, "api_version": null,
            "data": {"object": object, "previous_attributes": previous},
            "request": {"id": "req_1", "idempotency_key": key},
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
    fn a_payment_method_set_by_the_tenant_is_seen_in_the_change() {
        use serde_json::json;
        let sub = json!({"id": "sub_1", "default_payment_method": "pm_new"});
        let changed = Some(json!({"default_payment_method": "pm_old"}));
        let updated = event_with(
            "customer.subscription.updated",
            sub.clone(),
            changed.clone(),
            None,
        );
        assert_eq!(updated.payment_method_set(), Some("pm_new"));
        let other = event_with(
            "customer.subscription.updated",
            sub.clone(),
            Some(json!({"status": "trialing"})),
            None,
        );
        assert_eq!(other.payment_method_set(), None);
        let created = event_with("customer.subscription.created", sub.clone(), None, None);
        assert_eq!(created.payment_method_set(), Some("pm_new"));
        let customer =
            json!({"id": "cus_1", "invoice_settings": {"default_payment_method": {"id": "pm_c"}}});
        let portal = event_with(
            "customer.updated",
            customer.clone(),
            Some(json!({"invoice_settings": {"default_payment_method": null}})),
            Some("portal-request"),
        );
        assert_eq!(portal.payment_method_set(), Some("pm_c"));
        let email = event_with(
            "customer.updated",
            customer,
            Some(json!({"email": "a@b"})),
            None,
        );
        assert_eq!(email.payment_method_set(), None);
        // Our own copying write is not the tenant's change.
        let echo = event_with(
            "customer.subscription.updated",
            sub,
            changed,
            Some("pm-follow:acme:pm_new:1:sub_1"),
        );
        assert_eq!(echo.payment_method_set(), None);
        assert_eq!(
            event("customer.updated", None).topic(),
            Some(Topic::Customer)
        );
        assert_eq!(
            event(PAYMENT_ACTION_REQUIRED, None).topic(),
            Some(Topic::Invoice)
        );
    }
}
