//! The simulator's objects, kept typed (small in memory) and rendered to Stripe's JSON shapes by
//! `store.rs`.

use std::collections::HashMap;

use crate::form::Metadata;

/// Objects of one kind by id, plus creation order for newest-first listing.
#[derive(Debug)]
pub struct Table<T> {
    map: HashMap<String, T>,
    order: Vec<String>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            map: HashMap::new(),
            order: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    pub fn insert(&mut self, id: String, v: T) {
        if self.map.insert(id.clone(), v).is_none() {
            self.order.push(id);
        }
    }
    pub fn get(&self, id: &str) -> Option<&T> {
        self.map.get(id)
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.map.get_mut(id)
    }
    pub fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }
    pub fn remove(&mut self, id: &str) -> Option<T> {
        // The id stays in `order`; listing skips ids that are gone.
        self.map.remove(id)
    }
    /// Newest first, as Stripe lists.
    pub fn newest_first(&self) -> impl Iterator<Item = (&String, &T)> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.map.get(id).map(|v| (id, v)))
    }
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: Metadata,
    pub invoice_prefix: String,
    pub next_invoice_sequence: u32,
    pub default_payment_method: Option<String>,
    pub balance: i64,
    pub preferred_locales: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PaymentMethod {
    pub id: String,
    pub created: i64,
    pub customer: Option<String>,
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

impl PaymentMethod {
    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }
    /// Stripe's "charge fails after attach" test card.
    pub fn charge_fails(&self) -> bool {
        matches!(
            self.number.as_str(),
            "4000000000000341" | "4000000000000002" | "4000000000009995"
        )
    }
    pub fn brand(&self) -> &'static str {
        match self.number.as_bytes().first() {
            Some(b'5') => "mastercard",
            Some(b'3') => "amex",
            _ => "visa",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub created: i64,
    pub updated: i64,
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    pub metadata: Metadata,
    pub default_price: Option<String>,
    pub unit_label: Option<String>,
    pub statement_descriptor: Option<String>,
    pub tax_code: Option<String>,
    pub url: Option<String>,
    pub images: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Recurring {
    pub interval: String,
    pub interval_count: u32,
    pub usage_type: String,
    pub trial_period_days: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Price {
    pub id: String,
    pub created: i64,
    pub product: String,
    pub currency: String,
    pub unit_amount: i64,
    pub active: bool,
    pub nickname: Option<String>,
    pub lookup_key: Option<String>,
    pub metadata: Metadata,
    pub recurring: Option<Recurring>,
    pub tax_behavior: String,
}

#[derive(Debug, Clone)]
pub struct SubItem {
    pub id: String,
    pub created: i64,
    pub price: String,
    pub quantity: i64,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub status: String,
    pub items: Vec<SubItem>,
    pub start_date: i64,
    pub billing_cycle_anchor: i64,
    pub current_period_start: i64,
    pub current_period_end: i64,
    /// Periods elapsed since the anchor; renewals compute the next end from the anchor.
    pub periods: u32,
    pub trial_start: Option<i64>,
    pub trial_end: Option<i64>,
    /// `customer.subscription.trial_will_end` goes out once, three days before the trial ends.
    pub trial_will_end_sent: bool,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<i64>,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub cancellation_comment: Option<String>,
    pub cancellation_feedback: Option<String>,
    pub latest_invoice: Option<String>,
    pub metadata: Metadata,
    pub collection_method: String,
    pub days_until_due: Option<i64>,
    pub default_payment_method: Option<String>,
    pub description: Option<String>,
    pub currency: String,
}

#[derive(Debug, Clone)]
pub struct InvoiceItem {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub invoice: Option<String>,
    pub subscription: Option<String>,
    pub amount: i64,
    pub unit_amount_decimal: String,
    pub quantity: i64,
    pub currency: String,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub price: Option<String>,
    pub period_start: i64,
    pub period_end: i64,
    pub discountable: bool,
    pub line_id: String,
}

/// A subscription line on an invoice; invoice-item lines come from the items themselves.
#[derive(Debug, Clone)]
pub struct SubLine {
    pub id: String,
    pub subscription: String,
    pub subscription_item: String,
    pub price: String,
    pub quantity: i64,
    pub amount: i64,
    pub description: String,
    pub period_start: i64,
    pub period_end: i64,
}

#[derive(Debug, Clone)]
pub struct Invoice {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub subscription: Option<String>,
    pub status: String,
    pub currency: String,
    pub billing_reason: String,
    pub collection_method: String,
    pub days_until_due: Option<i64>,
    pub due_date: Option<i64>,
    pub auto_advance: bool,
    pub description: Option<String>,
    pub footer: Option<String>,
    pub metadata: Metadata,
    pub number: Option<String>,
    pub sub_lines: Vec<SubLine>,
    pub item_ids: Vec<String>,
    pub period_start: i64,
    pub period_end: i64,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub marked_uncollectible_at: Option<i64>,
    pub amount_paid: i64,
    pub attempt_count: u32,
    pub attempted: bool,
    pub next_payment_attempt: Option<i64>,
    pub automatically_finalizes_at: Option<i64>,
    pub default_payment_method: Option<String>,
    pub paid_out_of_band: bool,
    /// Set by `/send`; shown on the hosted page.
    pub sent: bool,
}

impl Invoice {
    /// A fresh manual draft; callers override what differs.
    pub fn draft(id: String, customer: String, currency: String, now: i64) -> Invoice {
        Invoice {
            id,
            created: now,
            customer,
            subscription: None,
            status: "draft".into(),
            currency,
            billing_reason: "manual".into(),
            collection_method: "charge_automatically".into(),
            days_until_due: None,
            due_date: None,
            auto_advance: false,
            description: None,
            footer: None,
            metadata: Metadata::new(),
            number: None,
            sub_lines: Vec::new(),
            item_ids: Vec::new(),
            period_start: now,
            period_end: now,
            finalized_at: None,
            paid_at: None,
            voided_at: None,
            marked_uncollectible_at: None,
            amount_paid: 0,
            attempt_count: 0,
            attempted: false,
            next_payment_attempt: None,
            automatically_finalizes_at: None,
            default_payment_method: None,
            paid_out_of_band: false,
            sent: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CheckoutLine {
    pub price: String,
    pub quantity: i64,
}

#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub id: String,
    pub created: i64,
    pub expires_at: i64,
    pub mode: String,
    pub status: String,
    pub payment_status: String,
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    pub client_reference_id: Option<String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub line_items: Vec<CheckoutLine>,
    pub trial_period_days: Option<i64>,
    pub trial_end: Option<i64>,
    pub sub_metadata: Metadata,
    pub sub_description: Option<String>,
    pub metadata: Metadata,
    pub payment_method_types: Vec<String>,
    pub subscription: Option<String>,
    pub invoice: Option<String>,
    pub currency: String,
    pub amount_total: i64,
    pub locale: Option<String>,
    pub allow_promotion_codes: Option<bool>,
    pub billing_address_collection: Option<String>,
    pub customer_creation: Option<String>,
    pub payment_method_collection: Option<String>,
    pub ui_mode: String,
}

#[derive(Debug, Clone)]
pub struct PortalSession {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub configuration: String,
    pub return_url: Option<String>,
    pub locale: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub id: String,
    pub created: i64,
    pub updated: i64,
    pub active: bool,
    pub is_default: bool,
    pub name: Option<String>,
    pub default_return_url: Option<String>,
    pub headline: Option<String>,
    pub privacy_policy_url: Option<String>,
    pub terms_of_service_url: Option<String>,
    /// The `features` hash as given, merged over the defaults.
    pub features: serde_json::Value,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub id: String,
    pub created: i64,
    pub url: String,
    pub secret: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub status: String,
    pub api_version: Option<String>,
    pub metadata: Metadata,
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.status == "enabled"
            && self
                .enabled_events
                .iter()
                .any(|e| e == "*" || e == event_type)
    }
}

/// An event kept as its serialized JSON: events are immutable and numerous.
#[derive(Debug, Clone)]
pub struct EventRec {
    pub kind: String,
    pub created: i64,
    pub json: Box<str>,
}
