//! The simulator's objects, kept typed (small in memory) and rendered to Stripe's JSON shapes by
//! `render.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};

use crate::form::Metadata;

/// A secondary key a row is listed under: `("customer", "cus_..")`, `("invoice", "in_..")`,
/// `("metadata", "k\0v")`. Lists and searches filtered by such a key read only the rows under it.
pub type Key = (&'static str, String);

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

/// What a table knows about its rows beyond their id: the keys they are listed under and the
/// moments the clock must act on them. Both are recomputed whenever a row is written.
pub trait Row {
    fn keys(&self, _out: &mut Vec<Key>) {}
    /// `(when, what)`: `what` is the row kind's own tag; ties in time go to the lower tag.
    fn due(&self, _out: &mut Vec<(i64, u8)>) {}
}

fn metadata_keys(m: &Metadata, out: &mut Vec<Key>) {
    for (k, v) in m {
        out.push(("metadata", meta_key(k, v)));
    }
}

/// The index value for `metadata[k] = v`.
pub fn meta_key(k: &str, v: &str) -> String {
    format!("{k}\u{0}{v}")
}

#[derive(Debug, Default)]
struct Indexes {
    by_key: HashMap<Key, BTreeSet<u64>>,
    /// `(when, newest first, tag)`: the order in which the clock processes what is due.
    due: BTreeSet<(i64, Reverse<u64>, u8)>,
}

impl Indexes {
    fn add(&mut self, seq: u64, keys: &[Key], due: &[(i64, u8)]) {
        for k in keys {
            self.by_key.entry(k.clone()).or_default().insert(seq);
        }
        for (t, tag) in due {
            self.due.insert((*t, Reverse(seq), *tag));
        }
    }

    fn remove(&mut self, seq: u64, keys: &[Key], due: &[(i64, u8)]) {
        for k in keys {
            if let Some(set) = self.by_key.get_mut(k) {
                set.remove(&seq);
                if set.is_empty() {
                    self.by_key.remove(k);
                }
            }
        }
        for (t, tag) in due {
            self.due.remove(&(*t, Reverse(seq), *tag));
        }
    }
}

fn row_index<T: Row>(row: &T) -> (Vec<Key>, Vec<(i64, u8)>) {
    let mut keys = Vec::new();
    let mut due = Vec::new();
    row.keys(&mut keys);
    row.due(&mut due);
    (keys, due)
}

/// Objects of one kind by id, in creation order (for newest-first listing), with the secondary
/// keys and due times of [`Row`] kept up to date on every write.
#[derive(Debug)]
pub struct Table<T> {
    map: HashMap<String, (u64, T)>,
    order: Vec<String>,
    index: Indexes,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            map: HashMap::new(),
            order: Vec::new(),
            index: Indexes::default(),
        }
    }
}

/// A row being written; its keys and due times are re-indexed when it is dropped.
pub struct RowMut<'a, T: Row> {
    seq: u64,
    row: &'a mut T,
    index: &'a mut Indexes,
    old_keys: Vec<Key>,
    old_due: Vec<(i64, u8)>,
}

impl<T: Row> Deref for RowMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.row
    }
}

impl<T: Row> DerefMut for RowMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.row
    }
}

impl<T: Row> Drop for RowMut<'_, T> {
    fn drop(&mut self) {
        let (keys, due) = row_index(&*self.row);
        if keys != self.old_keys {
            let gone: Vec<Key> = self
                .old_keys
                .iter()
                .filter(|k| !keys.contains(k))
                .cloned()
                .collect();
            let new: Vec<Key> = keys
                .iter()
                .filter(|k| !self.old_keys.contains(k))
                .cloned()
                .collect();
            self.index.remove(self.seq, &gone, &[]);
            self.index.add(self.seq, &new, &[]);
        }
        if due != self.old_due {
            self.index.remove(self.seq, &[], &self.old_due);
            self.index.add(self.seq, &[], &due);
        }
    }
}

impl<T: Row> Table<T> {
    pub fn insert(&mut self, id: String, v: T) {
        let (keys, due) = row_index(&v);
        match self.map.get_mut(&id) {
            Some((seq, old)) => {
                let seq = *seq;
                let (old_keys, old_due) = row_index(&*old);
                self.index.remove(seq, &old_keys, &old_due);
                *old = v;
                self.index.add(seq, &keys, &due);
            }
            None => {
                let seq = self.order.len() as u64;
                self.index.add(seq, &keys, &due);
                self.order.push(id.clone());
                self.map.insert(id, (seq, v));
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.map.get(id).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<RowMut<'_, T>> {
        let (seq, row) = self.map.get_mut(id)?;
        let (old_keys, old_due) = row_index(&*row);
        Some(RowMut {
            seq: *seq,
            row,
            index: &mut self.index,
            old_keys,
            old_due,
        })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    pub fn remove(&mut self, id: &str) -> Option<T> {
        // The id stays in `order`; listing skips ids that are gone.
        let (seq, v) = self.map.remove(id)?;
        let (keys, due) = row_index(&v);
        self.index.remove(seq, &keys, &due);
        Some(v)
    }

    /// Newest first, as Stripe lists.
    pub fn newest_first(&self) -> impl Iterator<Item = (&String, &T)> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.map.get(id).map(|(_, v)| (id, v)))
    }

    /// The rows listed under `(kind, value)`, newest first: reads only those rows.
    pub fn with<'a>(
        &'a self,
        kind: &'static str,
        value: &str,
    ) -> impl Iterator<Item = (&'a String, &'a T)> + 'a {
        let key: Key = (kind, value.to_string());
        self.index
            .by_key
            .get(&key)
            .into_iter()
            .flat_map(|set| set.iter().rev())
            .filter_map(|seq| {
                let id = self.order.get(*seq as usize)?;
                self.map.get(id).map(|(_, v)| (id, v))
            })
    }

    /// The earliest due moment of any row: `(when, tag, id)`.
    pub fn first_due(&self) -> Option<(i64, u8, &String)> {
        self.index
            .due
            .iter()
            .next()
            .and_then(|(t, Reverse(seq), tag)| {
                self.order.get(*seq as usize).map(|id| (*t, *tag, id))
            })
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

/// What kind of payment method a `PaymentMethod` is (Stripe's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmKind {
    Card,
    /// ACH Direct Debit: `number` is the account number (routing 110000000, Stripe's test bank).
    UsBankAccount,
}

impl PmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PmKind::Card => "card",
            PmKind::UsBankAccount => "us_bank_account",
        }
    }
}

/// Stripe's ACH test account numbers that fail once the debit has been processing
/// (https://docs.stripe.com/testing#ach-direct-debit), with the failure each gives: its error code and
/// decline code (the return's reason, https://docs.stripe.com/declines/network-codes: R01/R09
/// `insufficient_funds`, R02 `bank_account_closed`, R03/R04 `bank_account_invalid_details`, R10 and the
/// other unauthorized returns `debit_not_authorized`) and message.
pub const FAILING_BANK_ACCOUNTS: &[(&str, &str, &str, &str)] = &[
    (
        "000111111113",
        "account_closed",
        "bank_account_closed",
        "The customer's bank account has been closed.",
    ),
    (
        "000111111116",
        "no_account",
        "bank_account_invalid_details",
        "The customer's bank account could not be located.",
    ),
    (
        "000222222227",
        "insufficient_funds",
        "insufficient_funds",
        "The customer's account has insufficient funds to cover this payment.",
    ),
    (
        "000333333335",
        "debit_not_authorized",
        "debit_not_authorized",
        "The customer has notified their bank that this payment was unauthorized.",
    ),
];

/// Stripe's declining test cards that still attach (so that a later charge can fail), with the
/// decline code each gives (https://docs.stripe.com/testing#declined-payments).
pub const DECLINING_CARDS: &[(&str, &str)] = &[
    ("4000000000000341", "generic_decline"),
    ("4000000000000002", "generic_decline"),
    ("4000000000009995", "insufficient_funds"),
    ("4000000000009987", "lost_card"),
    ("4000000000009979", "stolen_card"),
];

/// The routing number of Stripe's ACH test bank.
pub const TEST_ROUTING_NUMBER: &str = "110000000";

#[derive(Debug, Clone)]
pub struct PaymentMethod {
    pub id: String,
    pub created: i64,
    pub customer: Option<String>,
    pub kind: PmKind,
    /// The card number, or the bank account number.
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

impl PaymentMethod {
    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }
    /// Stripe's "charge fails after attach" test cards (a bank debit fails later, not at once).
    pub fn charge_fails(&self) -> bool {
        self.decline_code().is_some()
    }
    /// Why a charge of this card is declined, when it is one of [`DECLINING_CARDS`].
    pub fn decline_code(&self) -> Option<&'static str> {
        if self.kind != PmKind::Card {
            return None;
        }
        DECLINING_CARDS
            .iter()
            .find(|(n, _)| *n == self.number)
            .map(|(_, code)| *code)
    }
    /// Stripe's "always authenticate" test card: every charge needs 3-D Secure, so an off-session
    /// charge (an invoice payment) fails with `authentication_required`.
    pub fn needs_authentication(&self) -> bool {
        self.kind == PmKind::Card && self.number == "4000002760003184"
    }
    /// A bank debit: the payment is `processing` for days before it succeeds or fails.
    pub fn is_bank_debit(&self) -> bool {
        self.kind == PmKind::UsBankAccount
    }
    /// How a processing debit from this account ends: `None` succeeds, else (code, decline code,
    /// message).
    pub fn debit_failure(&self) -> Option<(&'static str, &'static str, &'static str)> {
        FAILING_BANK_ACCOUNTS
            .iter()
            .find(|(n, ..)| *n == self.number)
            .map(|(_, code, decline, message)| (*code, *decline, *message))
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
    /// `pause_collection`: renewals still invoice, collection follows `behavior`.
    pub pause_collection: Option<PauseCollection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PauseCollection {
    /// `keep_as_draft`, `mark_uncollectible` or `void`.
    pub behavior: String,
    pub resumes_at: Option<i64>,
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
    /// The invoice's default PaymentIntent, made at finalization when there is something to pay.
    pub payment_intent: Option<String>,
    /// That PaymentIntent's state: `requires_payment_method`, `requires_action`, `processing`,
    /// `succeeded` or `canceled`, with the payment method of its last attempt and its last error
    /// (code, decline code, message).
    pub pi_status: String,
    pub pi_payment_method: Option<String>,
    pub pi_error: Option<(String, String, String)>,
    /// While a bank debit is processing: when the bank's answer comes.
    pub processing_until: Option<i64>,
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
            payment_intent: None,
            pi_status: "requires_payment_method".into(),
            pi_payment_method: None,
            pi_error: None,
            processing_until: None,
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

// ---- what each table indexes ------------------------------------------------------------------

/// Due tags of subscriptions, in the order ties are processed.
pub mod sub_due {
    pub const PERIOD_END: u8 = 0;
    pub const TRIAL_WILL_END: u8 = 1;
    pub const INCOMPLETE_EXPIRY: u8 = 2;
    pub const CANCEL_AT: u8 = 3;
    pub const RESUME_COLLECTION: u8 = 4;
}

/// Due tags of invoices.
pub mod invoice_due {
    pub const AUTO_FINALIZE: u8 = 0;
    pub const RETRY_CHARGE: u8 = 1;
    pub const SETTLE_DEBIT: u8 = 2;
}

impl Row for Customer {
    fn keys(&self, out: &mut Vec<Key>) {
        if let Some(e) = &self.email {
            out.push(("email", e.to_ascii_lowercase()));
        }
        metadata_keys(&self.metadata, out);
    }
}

impl Row for PaymentMethod {
    fn keys(&self, out: &mut Vec<Key>) {
        if let Some(c) = &self.customer {
            out.push(("customer", c.clone()));
        }
    }
}

impl Row for Product {
    fn keys(&self, out: &mut Vec<Key>) {
        metadata_keys(&self.metadata, out);
    }
}

impl Row for Price {
    fn keys(&self, out: &mut Vec<Key>) {
        out.push(("product", self.product.clone()));
        if let Some(k) = &self.lookup_key {
            out.push(("lookup_key", k.clone()));
        }
        metadata_keys(&self.metadata, out);
    }
}

impl Row for Subscription {
    fn keys(&self, out: &mut Vec<Key>) {
        out.push(("customer", self.customer.clone()));
        metadata_keys(&self.metadata, out);
    }

    fn due(&self, out: &mut Vec<(i64, u8)>) {
        match self.status.as_str() {
            "trialing" => {
                if let Some(t) = self.trial_end {
                    out.push((t, sub_due::PERIOD_END));
                    // Stripe only warns about trials longer than the warning period.
                    if !self.trial_will_end_sent && t - 3 * DAY > self.created {
                        out.push((t - 3 * DAY, sub_due::TRIAL_WILL_END));
                    }
                }
            }
            "active" | "past_due" | "unpaid" => {
                out.push((self.current_period_end, sub_due::PERIOD_END));
            }
            "incomplete" => out.push((self.created + 23 * HOUR, sub_due::INCOMPLETE_EXPIRY)),
            _ => {}
        }
        let live = self.status != "canceled" && self.status != "incomplete_expired";
        if let Some(t) = self.cancel_at {
            if live && !self.cancel_at_period_end {
                out.push((t, sub_due::CANCEL_AT));
            }
        }
        if let Some(t) = self.pause_collection.as_ref().and_then(|p| p.resumes_at) {
            if live {
                out.push((t, sub_due::RESUME_COLLECTION));
            }
        }
    }
}

impl Row for InvoiceItem {
    fn keys(&self, out: &mut Vec<Key>) {
        out.push(("customer", self.customer.clone()));
        match &self.invoice {
            Some(i) => out.push(("invoice", i.clone())),
            None => out.push(("pending", self.customer.clone())),
        }
    }
}

impl Row for Invoice {
    fn keys(&self, out: &mut Vec<Key>) {
        out.push(("customer", self.customer.clone()));
        if let Some(s) = &self.subscription {
            out.push(("subscription", s.clone()));
        }
        metadata_keys(&self.metadata, out);
    }

    fn due(&self, out: &mut Vec<(i64, u8)>) {
        if let (Some(t), "open") = (self.processing_until, self.status.as_str()) {
            out.push((t, invoice_due::SETTLE_DEBIT));
        }
        if !self.auto_advance {
            return;
        }
        match (
            self.status.as_str(),
            self.automatically_finalizes_at,
            self.next_payment_attempt,
        ) {
            ("draft", Some(t), _) => out.push((t, invoice_due::AUTO_FINALIZE)),
            ("open", _, Some(t)) => out.push((t, invoice_due::RETRY_CHARGE)),
            _ => {}
        }
    }
}

impl Row for CheckoutSession {
    fn keys(&self, out: &mut Vec<Key>) {
        if let Some(c) = &self.customer {
            out.push(("customer", c.clone()));
        }
    }
}

impl Row for PortalSession {}
impl Row for PortalConfig {}
impl Row for WebhookEndpoint {}

impl Row for EventRec {
    fn keys(&self, out: &mut Vec<Key>) {
        out.push(("type", self.kind.clone()));
    }
}
