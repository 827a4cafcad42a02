//! The shapes of the objects that bill: subscriptions, invoice items, invoices with their lines,
//! and each invoice's default PaymentIntent. They read each other's figures (a line its item and
//! price, a PaymentIntent its invoice's total), so they are kept side by side.

use serde_json::{json, Map, Value};

use super::md;
use crate::model::*;
use crate::store::Store;

/// How many lines an invoice embeds (stripe/stripe-php#1400: "you only get 10 lines at most in
/// `lines` by default").
pub const EMBEDDED_LINES: usize = 10;

impl Store {
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
}
