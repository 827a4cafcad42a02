//! All simulator state, the JSON rendering of every object in Stripe's current shape, and events.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::form::Metadata;
use crate::ids::new_id;
use crate::model::*;
use crate::webhooks::Hooks;

/// How many lines an invoice embeds (stripe/stripe-php#1400: "you only get 10 lines at most in
/// `lines` by default").
pub const EMBEDDED_LINES: usize = 10;

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

fn md(m: &Metadata) -> Value {
    json!(m)
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

    // ---- rendering ----------------------------------------------------------------------

    pub fn render_id(&self, id: &str) -> Option<Value> {
        let prefix = id.split('_').next().unwrap_or("");
        Some(match prefix {
            "cus" => self.render_customer(self.customers.get(id)?),
            "pm" => self.render_pm(self.payment_methods.get(id)?),
            "prod" => self.render_product(self.products.get(id)?),
            "price" => self.render_price(self.prices.get(id)?),
            "sub" => self.render_sub(self.subscriptions.get(id)?),
            "ii" => self.render_invoiceitem(self.invoiceitems.get(id)?),
            "in" => self.render_invoice(self.invoices.get(id)?),
            "cs" => self.render_checkout(self.checkout_sessions.get(id)?),
            "bps" => self.render_portal_session(self.portal_sessions.get(id)?),
            "bpc" => self.render_portal_config(self.portal_configs.get(id)?),
            "we" => self.render_webhook_endpoint(self.webhook_endpoints.get(id)?, false),
            "evt" => serde_json::from_str(&self.events.get(id)?.json).ok()?,
            "pi" => {
                let inv = self.invoices.get(self.payment_intents.get(id)?)?;
                self.render_payment_intent(inv)?
            }
            _ => return None,
        })
    }

    pub fn render_customer(&self, c: &Customer) -> Value {
        let delinquent = self
            .invoices
            .with("customer", &c.id)
            .any(|(_, i)| i.status == "open" && i.attempt_count > 0);
        json!({
            "id": c.id,
            "object": "customer",
            "address": null,
            "balance": c.balance,
            "created": c.created,
            "currency": null,
            "default_source": null,
            "delinquent": delinquent,
            "description": c.description,
            "discount": null,
            "email": c.email,
            "invoice_prefix": c.invoice_prefix,
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": c.default_payment_method,
                "footer": null,
                "rendering_options": null,
            },
            "livemode": false,
            "metadata": md(&c.metadata),
            "name": c.name,
            "next_invoice_sequence": c.next_invoice_sequence,
            "phone": c.phone,
            "preferred_locales": c.preferred_locales,
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": null,
            "customer_account": null,
        })
    }

    pub fn render_pm(&self, pm: &PaymentMethod) -> Value {
        let card = (pm.kind == PmKind::Card).then(|| {
            json!({
                "brand": pm.brand(),
                "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                "country": "US",
                "display_brand": pm.brand(),
                "exp_month": pm.exp_month,
                "exp_year": pm.exp_year,
                "fingerprint": format!("sim{}", pm.number),
                "funding": "credit",
                "generated_from": null,
                "last4": pm.last4(),
                "networks": {"available": [pm.brand()], "preferred": null},
                "regulated_status": "unregulated",
                "three_d_secure_usage": {"supported": true},
                "wallet": null,
            })
        });
        let bank = (pm.kind == PmKind::UsBankAccount).then(|| {
            json!({
                "account_holder_type": "individual",
                "account_type": "checking",
                "bank_name": "STRIPE TEST BANK",
                "financial_connections_account": null,
                "fingerprint": format!("sim{}", pm.number),
                "last4": pm.last4(),
                "networks": {"preferred": "ach", "supported": ["ach"]},
                "routing_number": TEST_ROUTING_NUMBER,
                "status_details": null,
            })
        });
        let mut v = json!({
            "id": pm.id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": {"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null},
                "email": null, "name": null, "phone": null, "tax_id": null,
            },
            "created": pm.created,
            "customer": pm.customer,
            "customer_account": null,
            "livemode": false,
            "metadata": {},
            "type": pm.kind.as_str(),
        });
        v[pm.kind.as_str()] = card.or(bank).unwrap_or(Value::Null);
        v
    }

    /// The invoice's default PaymentIntent, from the state the invoice keeps of it.
    pub fn render_payment_intent(&self, inv: &Invoice) -> Option<Value> {
        let id = inv.payment_intent.as_ref()?;
        let amount = self.invoice_total(inv).max(0);
        let pm = inv
            .pi_payment_method
            .as_ref()
            .and_then(|p| self.payment_methods.get(p));
        let types: Vec<&str> = match pm {
            Some(p) => vec![p.kind.as_str()],
            None => vec!["card"],
        };
        let error = inv.pi_error.as_ref().map(|(code, decline, message)| {
            json!({
                "type": "card_error",
                "code": code,
                "decline_code": decline,
                "message": message,
                "payment_method": pm.map(|p| self.render_pm(p)),
            })
        });
        let next_action = (inv.pi_status == "requires_action").then(|| {
            json!({"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}})
        });
        Some(json!({
            "id": id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": if inv.pi_status == "succeeded" { amount } else { 0 },
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": null,
            "canceled_at": if inv.pi_status == "canceled" { json!(inv.voided_at) } else { Value::Null },
            "cancellation_reason": if inv.pi_status == "canceled" { json!("void_invoice") } else { Value::Null },
            "capture_method": "automatic",
            "client_secret": format!("{id}_secret_sim"),
            "confirmation_method": "automatic",
            "created": inv.finalized_at.unwrap_or(inv.created),
            "currency": inv.currency,
            "customer": inv.customer,
            "customer_account": null,
            "description": "Payment for Invoice",
            "excluded_payment_method_types": null,
            "last_payment_error": error,
            "latest_charge": null,
            "livemode": false,
            "managed_payments": null,
            "metadata": {},
            "next_action": next_action,
            "on_behalf_of": null,
            "payment_method": inv.pi_payment_method,
            "payment_method_configuration_details": null,
            "payment_method_options": {},
            "payment_method_types": types,
            "processing": null,
            "receipt_email": null,
            "review": null,
            "setup_future_usage": null,
            "shipping": null,
            "source": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": inv.pi_status,
            "transfer_data": null,
            "transfer_group": null,
        }))
    }

    /// The invoice's `payments` (includable: only rendered when expanded): its default payment.
    pub fn invoice_payments(&self, inv: &Invoice) -> Value {
        let data: Vec<Value> = inv
            .payment_intent
            .iter()
            .map(|pi| {
                let paid = inv.status == "paid";
                json!({
                    "id": format!("inpay_{}", &pi[3..]),
                    "object": "invoice_payment",
                    "amount_paid": if paid { json!(inv.amount_paid) } else { Value::Null },
                    "amount_requested": self.invoice_total(inv).max(0),
                    "created": inv.finalized_at.unwrap_or(inv.created),
                    "currency": inv.currency,
                    "invoice": inv.id,
                    "is_default": true,
                    "livemode": false,
                    "payment": {"type": "payment_intent", "payment_intent": pi},
                    "status": if paid { "paid" } else if inv.pi_status == "canceled" { "canceled" } else { "open" },
                    "status_transitions": {
                        "canceled_at": if inv.pi_status == "canceled" { json!(inv.voided_at) } else { Value::Null },
                        "paid_at": inv.paid_at,
                    },
                })
            })
            .collect();
        json!({
            "object": "list",
            "data": data,
            "has_more": false,
            "url": format!("/v1/invoice_payments?invoice={}", inv.id),
        })
    }

    pub fn render_product(&self, p: &Product) -> Value {
        json!({
            "id": p.id,
            "object": "product",
            "active": p.active,
            "created": p.created,
            "default_price": p.default_price,
            "description": p.description,
            "images": p.images,
            "livemode": false,
            "marketing_features": [],
            "metadata": md(&p.metadata),
            "name": p.name,
            "package_dimensions": null,
            "shippable": null,
            "statement_descriptor": p.statement_descriptor,
            "tax_code": p.tax_code,
            "type": "service",
            "unit_label": p.unit_label,
            "updated": p.updated,
            "url": p.url,
        })
    }

    pub fn render_price(&self, p: &Price) -> Value {
        let recurring = p.recurring.as_ref().map(|r| {
            json!({
                "interval": r.interval,
                "interval_count": r.interval_count,
                "meter": null,
                "trial_period_days": r.trial_period_days,
                "usage_type": r.usage_type,
            })
        });
        json!({
            "id": p.id,
            "object": "price",
            "active": p.active,
            "billing_scheme": "per_unit",
            "created": p.created,
            "currency": p.currency,
            "custom_unit_amount": null,
            "livemode": false,
            "lookup_key": p.lookup_key,
            "metadata": md(&p.metadata),
            "nickname": p.nickname,
            "product": p.product,
            "recurring": recurring,
            "tax_behavior": p.tax_behavior,
            "tiers_mode": null,
            "transform_quantity": null,
            "type": if p.recurring.is_some() { "recurring" } else { "one_time" },
            "unit_amount": p.unit_amount,
            "unit_amount_decimal": p.unit_amount.to_string(),
        })
    }

    fn render_plan(&self, p: &Price) -> Value {
        let r = p.recurring.clone().unwrap_or(Recurring {
            interval: "month".into(),
            interval_count: 1,
            usage_type: "licensed".into(),
            trial_period_days: None,
        });
        json!({
            "id": p.id,
            "object": "plan",
            "active": p.active,
            "amount": p.unit_amount,
            "amount_decimal": p.unit_amount.to_string(),
            "billing_scheme": "per_unit",
            "created": p.created,
            "currency": p.currency,
            "interval": r.interval,
            "interval_count": r.interval_count,
            "livemode": false,
            "metadata": md(&p.metadata),
            "meter": null,
            "nickname": p.nickname,
            "product": p.product,
            "tiers_mode": null,
            "transform_usage": null,
            "trial_period_days": r.trial_period_days,
            "usage_type": r.usage_type,
        })
    }

    pub fn render_sub(&self, s: &Subscription) -> Value {
        let items: Vec<Value> = s
            .items
            .iter()
            .map(|it| {
                let price = self.prices.get(&it.price);
                json!({
                    "id": it.id,
                    "object": "subscription_item",
                    "billing_thresholds": null,
                    "created": it.created,
                    "current_period_end": s.current_period_end,
                    "current_period_start": s.current_period_start,
                    "discounts": [],
                    "metadata": md(&it.metadata),
                    "plan": price.map(|p| self.render_plan(p)),
                    "price": price.map(|p| self.render_price(p)),
                    "quantity": it.quantity,
                    "subscription": s.id,
                    "tax_rates": [],
                })
            })
            .collect();
        json!({
            "id": s.id,
            "object": "subscription",
            "application": null,
            "application_fee_percent": null,
            "automatic_tax": {"enabled": false, "liability": null, "disabled_reason": null},
            "billing_cycle_anchor": s.billing_cycle_anchor,
            "billing_cycle_anchor_config": null,
            "billing_mode": {"type": "classic"},
            "billing_schedules": [],
            "billing_thresholds": null,
            "cancel_at": s.cancel_at,
            "cancel_at_period_end": s.cancel_at_period_end,
            "canceled_at": s.canceled_at,
            "cancellation_details": {
                "comment": s.cancellation_comment,
                "feedback": s.cancellation_feedback,
                "reason": s.cancellation_reason,
            },
            "collection_method": s.collection_method,
            "created": s.created,
            "currency": s.currency,
            "customer": s.customer,
            "customer_account": null,
            "days_until_due": s.days_until_due,
            "default_payment_method": s.default_payment_method,
            "default_source": null,
            "default_tax_rates": [],
            "description": s.description,
            "discounts": [],
            "ended_at": s.ended_at,
            "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": false,
                "total_count": s.items.len(),
                "url": format!("/v1/subscription_items?subscription={}", s.id),
            },
            "latest_invoice": s.latest_invoice,
            "livemode": false,
            "managed_payments": {"enabled": false},
            "metadata": md(&s.metadata),
            "next_pending_invoice_item_invoice": null,
            "on_behalf_of": null,
            "pause_collection": s.pause_collection.as_ref().map(|p| json!({
                "behavior": p.behavior,
                "resumes_at": p.resumes_at,
            })),
            "payment_settings": {
                "payment_method_options": null,
                "payment_method_types": null,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": null,
            "pending_setup_intent": null,
            "pending_update": null,
            "schedule": null,
            "start_date": s.start_date,
            "status": s.status,
            "test_clock": null,
            "transfer_data": null,
            "trial_end": s.trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": s.trial_start,
        })
    }

    fn pricing(&self, price: Option<&str>, unit_amount_decimal: &str) -> Value {
        let details = price.map(|p| {
            json!({
                "price": p,
                "product": self.prices.get(p).map(|x| x.product.clone()),
            })
        });
        json!({
            "type": "price_details",
            "price_details": details,
            "unit_amount_decimal": unit_amount_decimal,
        })
    }

    pub fn render_invoiceitem(&self, ii: &InvoiceItem) -> Value {
        let parent = ii.subscription.as_ref().map(|s| {
            json!({"type": "subscription_details", "subscription_details": {"subscription": s, "subscription_item": null}})
        });
        json!({
            "id": ii.id,
            "object": "invoiceitem",
            "amount": ii.amount,
            "currency": ii.currency,
            "customer": ii.customer,
            "customer_account": null,
            "date": ii.created,
            "description": ii.description,
            "discountable": ii.discountable,
            "discounts": [],
            "invoice": ii.invoice,
            "livemode": false,
            "metadata": md(&ii.metadata),
            "net_amount": ii.amount,
            "parent": parent,
            "period": {"end": ii.period_end, "start": ii.period_start},
            "pricing": self.pricing(ii.price.as_deref(), &ii.unit_amount_decimal),
            "proration": false,
            "quantity": ii.quantity,
            "quantity_decimal": ii.quantity.to_string(),
            "tax_rates": [],
            "test_clock": null,
        })
    }

    fn line_common(
        &self,
        id: &str,
        invoice: &str,
        amount: i64,
        currency: &str,
    ) -> Map<String, Value> {
        let v = json!({
            "id": id,
            "object": "line_item",
            "amount": amount,
            "currency": currency,
            "discount_amounts": [],
            "discountable": true,
            "discounts": [],
            "invoice": invoice,
            "livemode": false,
            "pretax_credit_amounts": [],
            "subtotal": amount,
            "taxes": [],
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// The invoice's lines in Stripe's order: subscription lines, then invoice items.
    pub fn invoice_lines(&self, inv: &Invoice) -> Vec<Value> {
        let mut out = Vec::new();
        for l in &inv.sub_lines {
            let mut m = self.line_common(&l.id, &inv.id, l.amount, &inv.currency);
            let unit = self
                .prices
                .get(&l.price)
                .map(|p| p.unit_amount)
                .unwrap_or(0);
            m.insert("description".into(), json!(l.description));
            m.insert("metadata".into(), json!({}));
            m.insert(
                "period".into(),
                json!({"end": l.period_end, "start": l.period_start}),
            );
            m.insert("quantity".into(), json!(l.quantity));
            m.insert("quantity_decimal".into(), json!(l.quantity.to_string()));
            // The pinned version keeps the subscription under `parent` only.
            m.insert("subscription".into(), Value::Null);
            m.insert(
                "parent".into(),
                json!({
                    "type": "subscription_item_details",
                    "invoice_item_details": null,
                    "subscription_item_details": {
                        "invoice_item": null,
                        "proration": false,
                        "proration_details": {"credited_items": null},
                        "subscription": l.subscription,
                        "subscription_item": l.subscription_item,
                    },
                }),
            );
            m.insert(
                "pricing".into(),
                self.pricing(Some(&l.price), &unit.to_string()),
            );
            out.push(Value::Object(m));
        }
        for ii in inv
            .item_ids
            .iter()
            .filter_map(|id| self.invoiceitems.get(id))
        {
            let mut m = self.line_common(&ii.line_id, &inv.id, ii.amount, &ii.currency);
            m.insert("description".into(), json!(ii.description));
            m.insert("metadata".into(), md(&ii.metadata));
            m.insert(
                "period".into(),
                json!({"end": ii.period_end, "start": ii.period_start}),
            );
            m.insert("quantity".into(), json!(ii.quantity));
            m.insert("quantity_decimal".into(), json!(ii.quantity.to_string()));
            m.insert("subscription".into(), Value::Null);
            m.insert(
                "parent".into(),
                json!({
                    "type": "invoice_item_details",
                    "invoice_item_details": {
                        "invoice_item": ii.id,
                        "proration": false,
                        "proration_details": {"credited_items": null},
                        "subscription": ii.subscription,
                    },
                    "subscription_item_details": null,
                }),
            );
            m.insert(
                "pricing".into(),
                self.pricing(ii.price.as_deref(), &ii.unit_amount_decimal),
            );
            out.push(Value::Object(m));
        }
        out
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

    pub fn hosted_invoice_url(&self, id: &str) -> String {
        format!("{}/invoice/{id}", self.base_url)
    }

    pub fn render_invoice(&self, inv: &Invoice) -> Value {
        let total = self.invoice_total(inv);
        let mut lines = self.invoice_lines(inv);
        // Stripe embeds the first lines only; `/v1/invoices/{id}/lines` pages the rest.
        let more_lines = lines.len() > EMBEDDED_LINES;
        lines.truncate(EMBEDDED_LINES);
        let cust = self.customers.get(&inv.customer);
        let finalized = inv.finalized_at.is_some();
        let amount_due = total.max(0);
        let remaining = if inv.status == "void" || inv.status == "paid" {
            0
        } else {
            amount_due - inv.amount_paid
        };
        let parent = inv.subscription.as_ref().map(|sid| {
            json!({
                "type": "subscription_details",
                "quote_details": null,
                "subscription_details": {
                    "metadata": self.subscriptions.get(sid).map(|s| md(&s.metadata)),
                    "subscription": sid,
                },
            })
        });
        json!({
            "id": inv.id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Stripe Simulator",
            "account_tax_ids": null,
            "amount_due": amount_due,
            "amount_overpaid": 0,
            "amount_paid": inv.amount_paid,
            "amount_remaining": remaining,
            "amount_shipping": 0,
            "application": null,
            "attempt_count": inv.attempt_count,
            "attempted": inv.attempted,
            "auto_advance": inv.auto_advance,
            "automatic_tax": {"enabled": false, "liability": null, "status": null, "disabled_reason": null, "provider": null},
            "automatically_finalizes_at": inv.automatically_finalizes_at,
            "billing_reason": inv.billing_reason,
            "collection_method": inv.collection_method,
            "created": inv.created,
            "currency": inv.currency,
            "custom_fields": null,
            "customer": inv.customer,
            "customer_account": null,
            "customer_address": null,
            "customer_email": cust.and_then(|c| c.email.clone()),
            "customer_name": cust.and_then(|c| c.name.clone()),
            "customer_phone": cust.and_then(|c| c.phone.clone()),
            "customer_shipping": null,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": inv.default_payment_method,
            "default_source": null,
            "default_tax_rates": [],
            "description": inv.description,
            "discounts": [],
            "due_date": inv.due_date,
            "effective_at": inv.finalized_at,
            "ending_balance": if finalized { json!(0) } else { Value::Null },
            "footer": inv.footer,
            "from_invoice": null,
            "hosted_invoice_url": if finalized { json!(self.hosted_invoice_url(&inv.id)) } else { Value::Null },
            "invoice_pdf": if finalized { json!(format!("{}/pdf", self.hosted_invoice_url(&inv.id))) } else { Value::Null },
            "issuer": {"type": "self"},
            "last_finalization_error": null,
            "latest_revision": null,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": more_lines,
                "url": format!("/v1/invoices/{}/lines", inv.id),
            },
            "livemode": false,
            "metadata": md(&inv.metadata),
            "next_payment_attempt": inv.next_payment_attempt,
            "number": inv.number,
            "on_behalf_of": null,
            "parent": parent,
            "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
            "period_end": inv.period_end,
            "period_start": inv.period_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": null,
            "rendering": null,
            "shipping_cost": null,
            "shipping_details": null,
            "starting_balance": 0,
            "statement_descriptor": null,
            "status": inv.status,
            "status_transitions": {
                "finalized_at": inv.finalized_at,
                "marked_uncollectible_at": inv.marked_uncollectible_at,
                "paid_at": inv.paid_at,
                "voided_at": inv.voided_at,
            },
            // The pinned version keeps the subscription under `parent` only.
            "subscription": null,
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "test_clock": null,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": if finalized { json!(inv.created) } else { Value::Null },
        })
    }

    pub fn checkout_url(&self, id: &str) -> String {
        format!("{}/checkout/{id}", self.base_url)
    }

    pub fn render_checkout(&self, cs: &CheckoutSession) -> Value {
        let cust = cs.customer.as_ref().and_then(|c| self.customers.get(c));
        let details = if cs.status == "complete" {
            json!({
                "address": null,
                "business_name": null,
                "email": cust.and_then(|c| c.email.clone()).or(cs.customer_email.clone()),
                "individual_name": null,
                "name": cust.and_then(|c| c.name.clone()),
                "phone": null,
                "tax_exempt": "none",
                "tax_ids": [],
            })
        } else {
            Value::Null
        };
        let subtotal = if cs.trial_period_days.is_some() || cs.trial_end.is_some() {
            0
        } else {
            cs.amount_total
        };
        json!({
            "id": cs.id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": false},
            "after_expiration": null,
            "allow_promotion_codes": cs.allow_promotion_codes,
            "amount_subtotal": subtotal,
            "amount_total": subtotal,
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": cs.billing_address_collection,
            "cancel_url": cs.cancel_url,
            "client_reference_id": cs.client_reference_id,
            "client_secret": null,
            "collected_information": null,
            "consent": null,
            "consent_collection": null,
            "created": cs.created,
            "currency": cs.currency,
            "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": cs.customer,
            "customer_account": null,
            "customer_creation": cs.customer_creation,
            "customer_details": details,
            "customer_email": cs.customer_email,
            "discounts": [],
            "expires_at": cs.expires_at,
            "integration_identifier": null,
            "invoice": cs.invoice,
            "invoice_creation": null,
            "livemode": false,
            "locale": cs.locale,
            "managed_payments": {"enabled": false},
            "metadata": md(&cs.metadata),
            "mode": cs.mode,
            "origin_context": null,
            "payment_intent": null,
            "payment_link": null,
            "payment_method_collection": cs.payment_method_collection.clone().unwrap_or_else(|| "always".into()),
            "payment_method_configuration_details": null,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": cs.payment_method_types,
            "payment_status": cs.payment_status,
            "permissions": null,
            "phone_number_collection": {"enabled": false},
            "recovered_from": null,
            "saved_payment_method_options": {"allow_redisplay_filters": ["always"], "payment_method_remove": null, "payment_method_save": null},
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_options": [],
            "status": cs.status,
            "submit_type": null,
            "subscription": cs.subscription,
            "success_url": cs.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": cs.ui_mode,
            "url": if cs.status == "open" { json!(self.checkout_url(&cs.id)) } else { Value::Null },
            "wallet_options": null,
        })
    }

    pub fn render_checkout_line(
        &self,
        cs: &CheckoutSession,
        idx: usize,
        l: &CheckoutLine,
    ) -> Value {
        let price = self.prices.get(&l.price);
        let amount = price.map(|p| p.unit_amount).unwrap_or(0) * l.quantity;
        let desc = price
            .and_then(|p| self.products.get(&p.product))
            .map(|p| p.name.clone());
        json!({
            "id": format!("li_{}_{}", &cs.id[cs.id.len().saturating_sub(12)..], idx),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": amount,
            "amount_tax": 0,
            "amount_total": amount,
            "adjustable_quantity": null,
            "currency": cs.currency,
            "description": desc,
            "metadata": {},
            "price": price.map(|p| self.render_price(p)),
            "quantity": l.quantity,
        })
    }

    pub fn portal_url(&self, id: &str) -> String {
        format!("{}/portal/{id}", self.base_url)
    }

    pub fn render_portal_session(&self, s: &PortalSession) -> Value {
        json!({
            "id": s.id,
            "object": "billing_portal.session",
            "configuration": s.configuration,
            "created": s.created,
            "customer": s.customer,
            "customer_account": null,
            "flow": null,
            "livemode": false,
            "locale": s.locale,
            "on_behalf_of": null,
            "return_url": s.return_url,
            "url": self.portal_url(&s.id),
        })
    }

    pub fn render_portal_config(&self, c: &PortalConfig) -> Value {
        json!({
            "id": c.id,
            "object": "billing_portal.configuration",
            "active": c.active,
            "application": null,
            "business_profile": {
                "headline": c.headline,
                "privacy_policy_url": c.privacy_policy_url,
                "terms_of_service_url": c.terms_of_service_url,
            },
            "created": c.created,
            "default_return_url": c.default_return_url,
            "features": c.features,
            "is_default": c.is_default,
            "livemode": false,
            "login_page": {"enabled": false, "url": null},
            "metadata": md(&c.metadata),
            "name": c.name,
            "updated": c.updated,
        })
    }

    pub fn render_webhook_endpoint(&self, w: &WebhookEndpoint, with_secret: bool) -> Value {
        let mut v = json!({
            "id": w.id,
            "object": "webhook_endpoint",
            "api_version": w.api_version,
            "application": null,
            "created": w.created,
            "description": w.description,
            "enabled_events": w.enabled_events,
            "livemode": false,
            "metadata": md(&w.metadata),
            "status": w.status,
            "url": w.url,
        });
        if with_secret {
            v["secret"] = json!(w.secret);
        }
        v
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
