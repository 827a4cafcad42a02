//! The simulator's state (every table of objects, the dashboard settings, the rate-limit counters,
//! who is asking) and the events its changes emit, kept in one value that every request locks
//! whole, so no request sees another's change half made.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::ids::new_id;
use crate::model::*;
use crate::webhooks::Hooks;

/// The API version stamped on events and webhook endpoints.
pub const API_VERSION: &str = "2025-08-27.basil";

/// Stripe's Subscriptions API limits (https://docs.stripe.com/rate-limits), per subscription.
pub const SUB_INVOICES_PER_MINUTE: usize = 10;
pub const SUB_INVOICES_PER_DAY: usize = 20;
pub const SUB_QUANTITY_UPDATES_PER_HOUR: usize = 200;

/// Wall-clock times of the requests that count against the per-subscription limits.
#[derive(Debug, Default)]
pub struct SubLimits {
    invoices: HashMap<String, VecDeque<i64>>,
    quantity_updates: HashMap<String, VecDeque<i64>>,
}

fn within(times: &mut VecDeque<i64>, now: i64, window: i64) -> usize {
    while times.front().is_some_and(|t| now - *t >= window) {
        times.pop_front();
    }
    times.len()
}

/// Which defaults the customer portal's card update writes (`/_sim/portal/card_update_writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CardWrites {
    /// The customer's `invoice_settings.default_payment_method` only.
    #[default]
    Customer,
    /// The `default_payment_method` of each of the customer's live subscriptions only.
    Subscription,
    Both,
}

impl CardWrites {
    pub fn parse(v: &str) -> Option<CardWrites> {
        Some(match v {
            "customer" => CardWrites::Customer,
            "subscription" => CardWrites::Subscription,
            "both" => CardWrites::Both,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CardWrites::Customer => "customer",
            CardWrites::Subscription => "subscription",
            CardWrites::Both => "both",
        }
    }

    pub fn customer(self) -> bool {
        matches!(self, CardWrites::Customer | CardWrites::Both)
    }

    pub fn subscriptions(self) -> bool {
        matches!(self, CardWrites::Subscription | CardWrites::Both)
    }
}

/// Account settings Stripe keeps in its dashboard, which the API does not show.
#[derive(Debug, Clone, Default)]
pub struct SimSettings {
    /// "Retry failed payments for one-off invoices" (off by default: only subscription invoices
    /// are retried automatically).
    pub retry_one_off_invoices: bool,
    pub portal_card_writes: CardWrites,
}

/// Who caused the current change, for `event.request`.
#[derive(Debug, Default, Clone)]
pub struct RequestCtx {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

pub struct Store {
    pub clock: Clock,
    pub base_url: String,
    pub customers: Table<Customer>,
    pub payment_methods: Table<PaymentMethod>,
    pub products: Table<Product>,
    pub prices: Table<Price>,
    pub subscriptions: Table<Subscription>,
    pub invoiceitems: Table<InvoiceItem>,
    pub invoices: Table<Invoice>,
    pub checkout_sessions: Table<CheckoutSession>,
    pub portal_sessions: Table<PortalSession>,
    pub portal_configs: Table<PortalConfig>,
    pub webhook_endpoints: Table<WebhookEndpoint>,
    pub events: Table<EventRec>,
    pub hooks: Hooks,
    pub request: RequestCtx,
    /// Set while `/_sim/rate_limit` is on (with its per-endpoint limits).
    pub sub_limits: Option<SubLimits>,
    pub settings: SimSettings,
    /// Each invoice's default PaymentIntent: its id, to the invoice that holds its state.
    pub payment_intents: HashMap<String, String>,
    /// Bank account numbers Stripe no longer debits: a debit of each came back for a reason other
    /// than insufficient funds (closed, not found, not authorized), as NACHA's rules require.
    pub blocked_bank_accounts: std::collections::HashSet<String>,
}

impl Store {
    pub fn new(base_url: String, hooks: Hooks) -> Self {
        Store {
            clock: Clock::default(),
            base_url,
            customers: Table::default(),
            payment_methods: Table::default(),
            products: Table::default(),
            prices: Table::default(),
            subscriptions: Table::default(),
            invoiceitems: Table::default(),
            invoices: Table::default(),
            checkout_sessions: Table::default(),
            portal_sessions: Table::default(),
            portal_configs: Table::default(),
            webhook_endpoints: Table::default(),
            events: Table::default(),
            hooks,
            request: RequestCtx::default(),
            sub_limits: None,
            settings: SimSettings::default(),
            payment_intents: HashMap::new(),
            blocked_bank_accounts: Default::default(),
        }
    }

    /// Counts a new invoice for subscription `sub` against Stripe's 10 a minute and 20 a day;
    /// 429 `rate_limit` over either.
    pub fn count_sub_invoice(&mut self, sub: &str) -> Result<(), ApiError> {
        let Some(l) = self.sub_limits.as_mut() else {
            return Ok(());
        };
        let now = crate::clock::real_now();
        let times = l.invoices.entry(sub.to_string()).or_default();
        let day = within(times, now, 86_400);
        let minute = times.iter().filter(|t| now - **t < 60).count();
        if minute >= SUB_INVOICES_PER_MINUTE || day >= SUB_INVOICES_PER_DAY {
            return Err(ApiError::rate_limited());
        }
        times.push_back(now);
        Ok(())
    }

    /// Counts a quantity update of subscription `sub` against Stripe's 200 an hour.
    pub fn count_quantity_update(&mut self, sub: &str) -> Result<(), ApiError> {
        let Some(l) = self.sub_limits.as_mut() else {
            return Ok(());
        };
        let now = crate::clock::real_now();
        let times = l.quantity_updates.entry(sub.to_string()).or_default();
        if within(times, now, 3600) >= SUB_QUANTITY_UPDATES_PER_HOUR {
            return Err(ApiError::rate_limited());
        }
        times.push_back(now);
        Ok(())
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn invoice_total(&self, inv: &Invoice) -> i64 {
        inv.sub_lines.iter().map(|l| l.amount).sum::<i64>()
            + inv
                .item_ids
                .iter()
                .filter_map(|id| self.invoiceitems.get(id))
                .map(|ii| ii.amount)
                .sum::<i64>()
    }

    // ---- events -------------------------------------------------------------------------

    pub fn emit(&mut self, kind: &str, object: Value, previous: Option<Value>) {
        let id = new_id("evt");
        let targets = self.hooks.targets(kind, &self.webhook_endpoints);
        let mut data = Map::new();
        data.insert("object".into(), object);
        if let Some(p) = previous {
            data.insert("previous_attributes".into(), p);
        }
        let created = self.now();
        let ev = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": Value::Object(data),
            "livemode": false,
            "pending_webhooks": targets.len(),
            "request": {"id": self.request.id, "idempotency_key": self.request.idempotency_key},
            "type": kind,
        });
        let body: Box<str> = ev.to_string().into_boxed_str();
        // Each endpoint gets the event rendered with its own `api_version`.
        let mut by_version: Vec<(Option<String>, std::sync::Arc<str>)> = Vec::new();
        let mut deliveries = Vec::with_capacity(targets.len());
        for (target, version) in targets {
            let version = version.filter(|v| v != API_VERSION);
            let text = match by_version.iter().find(|(v, _)| *v == version) {
                Some((_, t)) => t.clone(),
                None => {
                    let t: std::sync::Arc<str> = match &version {
                        None => std::sync::Arc::from(&*body),
                        Some(v) => {
                            let mut e = ev.clone();
                            e["api_version"] = json!(v);
                            std::sync::Arc::from(e.to_string())
                        }
                    };
                    by_version.push((version, t.clone()));
                    t
                }
            };
            deliveries.push((target, text));
        }
        self.hooks.dispatch(deliveries, &id, kind);
        self.events.insert(
            id,
            EventRec {
                kind: kind.to_string(),
                created,
                json: body,
            },
        );
    }

    /// Emits `kind` with `previous_attributes` holding what changed between two renderings;
    /// nothing when nothing changed.
    pub fn emit_update(&mut self, kind: &str, before: Value, after: Value) {
        let prev = diff(&before, &after);
        if prev.as_object().is_some_and(|m| !m.is_empty()) {
            self.emit(kind, after, Some(prev));
        }
    }
}

/// `previous_attributes`: the old values of what changed. Plain hashes (metadata,
/// status_transitions) are diffed key by key; objects and lists are given whole.
pub fn diff(before: &Value, after: &Value) -> Value {
    let mut out = Map::new();
    if let (Value::Object(b), Value::Object(a)) = (before, after) {
        for (k, bv) in b {
            let av = a.get(k).unwrap_or(&Value::Null);
            if av == bv {
                continue;
            }
            let plain_hash = |v: &Value| v.as_object().is_some_and(|m| !m.contains_key("object"));
            if plain_hash(bv) && plain_hash(av) {
                let mut inner = diff(bv, av);
                // Keys that only exist now were absent before: Stripe reports them as "".
                if let (Some(im), Some(am), Some(bm)) =
                    (inner.as_object_mut(), av.as_object(), bv.as_object())
                {
                    for key in am.keys() {
                        if !bm.contains_key(key) {
                            im.insert(key.clone(), json!(""));
                        }
                    }
                }
                out.insert(k.clone(), inner);
            } else {
                out.insert(k.clone(), bv.clone());
            }
        }
    }
    Value::Object(out)
}
