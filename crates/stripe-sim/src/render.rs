//! Every object in the JSON shape of Stripe's current API, rendered from the typed model when it
//! is shown rather than kept as JSON, so the model stays small and each shape is written once for
//! responses, events and `expand[]`. Subscriptions, invoices and their payments are in `invoicing`.

use serde_json::{json, Value};

use crate::form::Metadata;
use crate::model::*;
use crate::store::Store;

mod invoicing;

fn md(m: &Metadata) -> Value {
    json!(m)
}

impl Store {
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
