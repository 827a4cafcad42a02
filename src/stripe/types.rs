//! The Stripe objects we read, with only the fields we use. Unknown fields are ignored, and fields that
//! Stripe may omit or null are optional, so new API versions and the simulator parse alike.

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

pub type Metadata = HashMap<String, String>;

/// A field that is an id, or the object itself when expanded (`expand[]=...`).
#[derive(Debug, Clone)]
pub enum Expandable<T> {
    Id(String),
    Object(Box<T>),
}

impl<T> Expandable<T> {
    pub fn object(&self) -> Option<&T> {
        match self {
            Expandable::Object(o) => Some(o),
            Expandable::Id(_) => None,
        }
    }
}

impl<T: HasId> Expandable<T> {
    pub fn id(&self) -> &str {
        match self {
            Expandable::Id(id) => id,
            Expandable::Object(o) => o.id(),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Expandable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(id) => Ok(Expandable::Id(id)),
            v @ Value::Object(_) => {
                let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
                match serde_json::from_value::<T>(v) {
                    Ok(o) => Ok(Expandable::Object(Box::new(o))),
                    // An expanded object we cannot fully read still names itself.
                    Err(e) => id
                        .map(Expandable::Id)
                        .ok_or_else(|| serde::de::Error::custom(e)),
                }
            }
            other => Err(serde::de::Error::custom(format!(
                "expected an id or an object, got {other}"
            ))),
        }
    }
}

/// Stripe sends `null` for some empty fields; read it as the empty value.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub trait HasId {
    fn id(&self) -> &str;
}

macro_rules! has_id {
    ($($t:ty),*) => { $(impl HasId for $t { fn id(&self) -> &str { &self.id } })* };
}
has_id!(
    PaymentIntent,
    PaymentMethod,
    Customer,
    Subscription,
    Invoice,
    InvoiceItem,
    Price,
    Product,
    CheckoutSession
);

#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    #[serde(default, deserialize_with = "nullable")]
    pub has_more: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SearchResult<T> {
    pub data: Vec<T>,
    #[serde(default, deserialize_with = "nullable")]
    pub has_more: bool,
    #[serde(default)]
    pub next_page: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
    #[serde(default, deserialize_with = "nullable")]
    pub deleted: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub invoice_settings: InvoiceSettings,
    /// This copy is the answer Stripe saved under a write's idempotency key, not a new one.
    #[serde(rename = "_replayed", default)]
    pub replayed: bool,
}

/// The customer's defaults for invoices: the payment method an invoice without its own, and without a
/// subscription that has one, is charged with.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvoiceSettings {
    #[serde(default)]
    pub default_payment_method: Option<Expandable<PaymentMethod>>,
}

/// A card or bank account (only what we show and compare).
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub card: Option<CardDetails>,
    #[serde(default)]
    pub us_bank_account: Option<BankDetails>,
    #[serde(default)]
    pub sepa_debit: Option<BankDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardDetails {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
    #[serde(default)]
    pub exp_month: Option<i64>,
    #[serde(default)]
    pub exp_year: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BankDetails {
    #[serde(default)]
    pub bank_name: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Recurring {
    pub interval: String,
    #[serde(default = "one")]
    pub interval_count: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub id: String,
    #[serde(default)]
    pub product: Option<Expandable<Product>>,
    #[serde(default)]
    pub unit_amount: Option<i64>,
    pub currency: String,
    #[serde(default)]
    pub recurring: Option<Recurring>,
    #[serde(default)]
    pub lookup_key: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub active: bool,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub active: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionItem {
    pub id: String,
    #[serde(default)]
    pub price: Option<Price>,
    #[serde(default)]
    pub quantity: Option<i64>,
    /// Where current API versions keep the period.
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: Expandable<Customer>,
    pub status: String,
    pub items: List<SubscriptionItem>,
    /// Where API versions before 2025-03-31 kept the period.
    #[serde(default)]
    pub current_period_start: Option<i64>,
    #[serde(default)]
    pub current_period_end: Option<i64>,
    #[serde(default)]
    pub trial_start: Option<i64>,
    #[serde(default)]
    pub trial_end: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    pub cancel_at_period_end: bool,
    #[serde(default)]
    pub cancel_at: Option<i64>,
    #[serde(default)]
    pub canceled_at: Option<i64>,
    #[serde(default)]
    pub ended_at: Option<i64>,
    pub created: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
    #[serde(default)]
    pub latest_invoice: Option<Expandable<Invoice>>,
    /// Where Checkout saves the card or bank account it collected (not on the customer).
    #[serde(default)]
    pub default_payment_method: Option<Expandable<PaymentMethod>>,
    /// Set while collection is paused (a demo tenant's subscription).
    #[serde(default)]
    pub pause_collection: Option<PauseCollection>,
    /// Stripe's clock when this copy was read (its answer's `Date`), when known.
    #[serde(rename = "_stripe_time", default)]
    pub stripe_time: Option<i64>,
    /// This copy is the answer Stripe saved under a write's idempotency key, not a new one.
    #[serde(rename = "_replayed", default)]
    pub replayed: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PauseCollection {
    pub behavior: String,
    #[serde(default)]
    pub resumes_at: Option<i64>,
}

impl Subscription {
    /// The current period, from the items (current API) or the subscription (older API versions).
    pub fn current_period(&self) -> (Option<i64>, Option<i64>) {
        let item = self.items.data.first();
        (
            item.and_then(|i| i.current_period_start)
                .or(self.current_period_start),
            item.and_then(|i| i.current_period_end)
                .or(self.current_period_end),
        )
    }

    /// The monthly amount: unit amount times quantity over the items, per month.
    pub fn monthly_amount_cents(&self) -> i64 {
        self.items
            .data
            .iter()
            .filter_map(|i| {
                let price = i.price.as_ref()?;
                let unit = price.unit_amount? * i.quantity.unwrap_or(1);
                let per_month = match price.recurring.as_ref() {
                    Some(r) if r.interval == "year" => unit / (12 * r.interval_count.max(1)),
                    Some(r) if r.interval == "month" => unit / r.interval_count.max(1),
                    _ => unit,
                };
                Some(per_month)
            })
            .sum()
    }

    pub fn price_id(&self) -> Option<&str> {
        self.items
            .data
            .first()
            .and_then(|i| i.price.as_ref())
            .map(|p| p.id.as_str())
    }

    pub fn currency(&self) -> String {
        self.items
            .data
            .first()
            .and_then(|i| i.price.as_ref())
            .map_or_else(|| "usd".to_owned(), |p| p.currency.clone())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusTransitions {
    #[serde(default)]
    pub finalized_at: Option<i64>,
    #[serde(default)]
    pub paid_at: Option<i64>,
    #[serde(default)]
    pub voided_at: Option<i64>,
    #[serde(default)]
    pub marked_uncollectible_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceLine {
    #[serde(default)]
    pub id: Option<String>,
    pub amount: i64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionDetails {
    #[serde(default)]
    pub subscription: Option<Expandable<Subscription>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceParent {
    #[serde(default)]
    pub subscription_details: Option<SubscriptionDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    pub id: String,
    #[serde(default)]
    pub customer: Option<Expandable<Customer>>,
    /// `draft`, `open`, `paid`, `void`, `uncollectible` (null only on previews).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub amount_due: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub amount_paid: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub amount_remaining: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub total: i64,
    pub currency: String,
    #[serde(default)]
    pub hosted_invoice_url: Option<String>,
    #[serde(default)]
    pub invoice_pdf: Option<String>,
    #[serde(default)]
    pub period_start: Option<i64>,
    #[serde(default)]
    pub period_end: Option<i64>,
    /// Set on invoices sent for payment (`send_invoice`); Stripe leaves it null on those it charges.
    #[serde(default)]
    pub due_date: Option<i64>,
    pub created: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
    #[serde(default)]
    pub lines: Option<List<InvoiceLine>>,
    #[serde(default, deserialize_with = "nullable")]
    pub status_transitions: StatusTransitions,
    #[serde(default)]
    pub collection_method: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub attempt_count: i64,
    #[serde(default)]
    pub billing_reason: Option<String>,
    /// Older API versions.
    #[serde(default)]
    pub subscription: Option<Expandable<Subscription>>,
    /// Current API versions: the subscription lives under `parent.subscription_details`.
    #[serde(default)]
    pub parent: Option<InvoiceParent>,
    /// The invoice's payments (includable: present only when asked for with `expand[]`).
    #[serde(default)]
    pub payments: Option<List<InvoicePayment>>,
    /// Stripe's clock when this copy was read (its answer's `Date`), when known.
    #[serde(rename = "_stripe_time", default)]
    pub stripe_time: Option<i64>,
}

/// One payment of an invoice (Stripe's `invoice_payment`).
#[derive(Debug, Clone, Deserialize)]
pub struct InvoicePayment {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment: Option<InvoicePaymentRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoicePaymentRef {
    #[serde(default)]
    pub payment_intent: Option<Expandable<PaymentIntent>>,
}

/// A PaymentIntent, as far as its state: `processing` (a bank debit in flight), `requires_action`
/// (the bank asks the customer to authenticate), `succeeded`, ...; and why its last attempt failed.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
}

/// Why a payment failed (a PaymentIntent's `last_payment_error`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PaymentError {
    /// `card_declined`, `authentication_required`, `account_closed`, `insufficient_funds`, ...
    #[serde(default)]
    pub code: Option<String>,
    /// The issuer's or the bank's reason: `lost_card`, `stolen_card`, `insufficient_funds`,
    /// `bank_account_closed`, ...
    #[serde(default)]
    pub decline_code: Option<String>,
    /// The payment method that failed (Stripe sends it whole).
    #[serde(default)]
    pub payment_method: Option<FailedPaymentMethod>,
}

/// The payment method of a failure, as far as which one and of what kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FailedPaymentMethod {
    pub id: String,
    /// `card`, `us_bank_account`, `sepa_debit`, ...
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl Invoice {
    /// The state of the invoice's payments, when they were expanded: `processing` or
    /// `requires_action` if any payment is, else None.
    pub fn payment_state(&self) -> Option<&str> {
        let intents = self.payments.as_ref()?.data.iter().filter_map(|p| {
            p.payment
                .as_ref()?
                .payment_intent
                .as_ref()?
                .object()?
                .status
                .as_deref()
        });
        let mut state = None;
        for status in intents {
            match status {
                "processing" => return Some("processing"),
                "requires_action" => state = Some("requires_action"),
                _ => {}
            }
        }
        state
    }

    /// Why the invoice's last payment attempt failed, when its payments were expanded and one of them
    /// failed (the default payment's PaymentIntent keeps its last error until it succeeds).
    pub fn last_failure(&self) -> Option<&PaymentError> {
        self.payments.as_ref()?.data.iter().find_map(|p| {
            p.payment
                .as_ref()?
                .payment_intent
                .as_ref()?
                .object()?
                .last_payment_error
                .as_ref()
        })
    }

    pub fn customer_id(&self) -> Option<&str> {
        self.customer.as_ref().map(|c| c.id())
    }

    pub fn subscription_id(&self) -> Option<&str> {
        self.subscription
            .as_ref()
            .or_else(|| {
                self.parent
                    .as_ref()
                    .and_then(|p| p.subscription_details.as_ref())
                    .and_then(|d| d.subscription.as_ref())
            })
            .map(|s| s.id())
    }

    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("draft")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct InvoiceItem {
    pub id: String,
    pub amount: i64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub invoice: Option<Expandable<Invoice>>,
    #[serde(default)]
    pub customer: Option<Expandable<Customer>>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub customer: Option<Expandable<Customer>>,
    #[serde(default)]
    pub subscription: Option<Expandable<Subscription>>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortalSession {
    pub id: String,
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortalConfiguration {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub is_default: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub active: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    #[serde(default, deserialize_with = "nullable")]
    pub enabled_events: Vec<String>,
    /// Only returned when the endpoint is created.
    #[serde(default)]
    pub secret: Option<String>,
    /// The API version its events are rendered in (`None`: the account's default).
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: Value,
    #[serde(default)]
    pub previous_attributes: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub data: EventData,
    #[serde(default)]
    pub api_version: Option<String>,
    /// The API request that caused the event, when one did.
    #[serde(default)]
    pub request: Option<EventRequest>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventRequest {
    #[serde(default)]
    pub id: Option<String>,
    /// The idempotency key of that request: tells our own writes from others'.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deleted {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(kind: &str) -> Value {
        let text = include_str!("../../testdata/stripe/fixtures3.json");
        let all: Value = serde_json::from_str(text).expect("fixtures parse");
        all["resources"][kind].clone()
    }

    fn parses<T: DeserializeOwned>(kind: &str) -> T {
        serde_json::from_value(fixture(kind))
            .unwrap_or_else(|e| panic!("fixture {kind} does not parse: {e}"))
    }

    #[test]
    fn every_fixture_we_use_parses() {
        let c: Customer = parses("customer");
        assert_eq!(c.id, "cus_QXg1o8vcGmoR32");
        let s: Subscription = parses("subscription");
        assert_eq!(s.customer.id(), "cus_QXg1o8vcGmoR32");
        let i: Invoice = parses("invoice");
        assert_eq!(i.amount_due, 1000);
        assert!(!i.lines.as_ref().unwrap().data.is_empty());
        let ii: InvoiceItem = parses("invoiceitem");
        assert_eq!(ii.amount, 1000);
        let cs: CheckoutSession = parses("checkout.session");
        assert!(cs.id.starts_with("cs_"));
        let _: PortalSession = parses("billing_portal.session");
        let _: PortalConfiguration = parses("billing_portal.configuration");
        let e: Event = parses("event");
        assert_eq!(e.event_type, "plan.created");
        let p: Price = parses("price");
        assert!(p.product.is_some());
        let _: Product = parses("product");
        let _: WebhookEndpoint = parses("webhook_endpoint");
        let pi: PaymentIntent = parses("payment_intent");
        assert!(!pi.id.is_empty());
        let _: InvoicePayment = parses("invoice_payment");
    }

    #[test]
    fn an_invoices_payment_state_comes_from_its_expanded_payment_intents() {
        let mut inv = fixture("invoice");
        let i: Invoice = serde_json::from_value(inv.clone()).unwrap();
        assert_eq!(i.payment_state(), None, "payments not expanded");
        let pay = |status: &str| {
            serde_json::json!({"object": "invoice_payment", "status": "open",
                "payment": {"type": "payment_intent", "payment_intent": {"id": "pi_1", "status": status}}})
        };
        for (status, state) in [
            ("processing", Some("processing")),
            ("requires_action", Some("requires_action")),
            ("requires_payment_method", None),
            ("succeeded", None),
        ] {
            inv["payments"] =
                serde_json::json!({"object": "list", "has_more": false, "data": [pay(status)]});
            let i: Invoice = serde_json::from_value(inv.clone()).unwrap();
            assert_eq!(i.payment_state(), state, "{status}");
        }
        // Not expanded: an id only.
        inv["payments"] = serde_json::json!({"data": [{"payment": {"payment_intent": "pi_1"}}]});
        let i: Invoice = serde_json::from_value(inv).unwrap();
        assert_eq!(i.payment_state(), None);
    }

    #[test]
    fn an_invoices_last_failure_comes_from_its_payment_intent() {
        let mut inv = fixture("invoice");
        let i: Invoice = serde_json::from_value(inv.clone()).unwrap();
        assert_eq!(i.last_failure(), None, "payments not expanded");
        inv["payments"] = serde_json::json!({"object": "list", "has_more": false, "data": [
            {"object": "invoice_payment", "status": "open", "payment": {"type": "payment_intent",
             "payment_intent": {"id": "pi_1", "status": "requires_payment_method",
               "last_payment_error": {"type": "card_error", "code": "card_declined",
                 "decline_code": "lost_card", "message": "Your card was declined.",
                 "payment_method": {"id": "pm_1", "object": "payment_method", "type": "card"}}}}}]});
        let i: Invoice = serde_json::from_value(inv.clone()).unwrap();
        let f = i.last_failure().unwrap();
        assert_eq!(f.code.as_deref(), Some("card_declined"));
        assert_eq!(f.decline_code.as_deref(), Some("lost_card"));
        let pm = f.payment_method.as_ref().unwrap();
        assert_eq!((pm.id.as_str(), pm.kind.as_deref()), ("pm_1", Some("card")));
        // Paid since: no error left.
        inv["payments"]["data"][0]["payment"]["payment_intent"] =
            serde_json::json!({"id": "pi_1", "status": "succeeded", "last_payment_error": null});
        let i: Invoice = serde_json::from_value(inv).unwrap();
        assert_eq!(i.last_failure(), None);
    }

    #[test]
    fn subscription_period_lives_on_items_or_on_the_subscription() {
        let mut current = fixture("subscription");
        current["items"]["data"][0]["current_period_start"] = 100.into();
        current["items"]["data"][0]["current_period_end"] = 200.into();
        current
            .as_object_mut()
            .unwrap()
            .remove("current_period_start");
        let s: Subscription = serde_json::from_value(current).unwrap();
        assert_eq!(s.current_period(), (Some(100), Some(200)));

        let mut older = fixture("subscription");
        for item in older["items"]["data"].as_array_mut().unwrap() {
            let item = item.as_object_mut().unwrap();
            item.remove("current_period_start");
            item.remove("current_period_end");
        }
        older["current_period_start"] = 300.into();
        older["current_period_end"] = 400.into();
        let s: Subscription = serde_json::from_value(older).unwrap();
        assert_eq!(s.current_period(), (Some(300), Some(400)));
    }

    #[test]
    fn expanded_and_collapsed_references_give_the_same_id() {
        let mut sub = fixture("subscription");
        let customer = fixture("customer");
        sub["customer"] = customer;
        let s: Subscription = serde_json::from_value(sub).unwrap();
        assert_eq!(s.customer.id(), "cus_QXg1o8vcGmoR32");
        assert!(s.customer.object().is_some());
    }

    #[test]
    fn invoice_subscription_from_parent_or_legacy_field() {
        let mut inv = fixture("invoice");
        inv["parent"] = serde_json::json!({"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}});
        let i: Invoice = serde_json::from_value(inv.clone()).unwrap();
        assert_eq!(i.subscription_id(), Some("sub_1"));
        inv["parent"] = Value::Null;
        inv["subscription"] = "sub_2".into();
        let i: Invoice = serde_json::from_value(inv).unwrap();
        assert_eq!(i.subscription_id(), Some("sub_2"));
    }
}
