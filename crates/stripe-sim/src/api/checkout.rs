//! Checkout sessions (`mode=subscription`): create, retrieve, list, `line_items`, expire.
//! Completing one is the hosted page's or `/_sim`'s business, through `billing`.

use serde_json::Value;

use super::{ignore, need_customer, retrieve, Route};
use crate::enums;
use crate::error::ApiError;
use crate::form::{new_metadata, Params};
use crate::ids::new_id;
use crate::listing::{created_filter, list_page};
use crate::model::{CheckoutLine, CheckoutSession};
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/checkout/sessions", |s, _, p| create(s, p)),
    Route::new("GET /v1/checkout/sessions", |s, _, p| list(s, p)),
    Route::new("GET /v1/checkout/sessions/{id}", |s, id, p| {
        retrieve(s, p, id, "checkout.session", "session")
    }),
    Route::new("GET /v1/checkout/sessions/{id}/line_items", |s, id, p| {
        line_items(s, id, p)
    }),
    Route::new("POST /v1/checkout/sessions/{id}/expire", expire),
];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let mode = p
        .enum_str("mode", &["payment", "setup", "subscription"])?
        .ok_or_else(|| ApiError::missing_param("mode"))?;
    let mut lines = Vec::new();
    for mut li in p.list_of_maps("line_items")?.unwrap_or_default() {
        let name = li.name("price");
        let price = li.req_str("price")?;
        let quantity = li.int("quantity")?.unwrap_or(1);
        ignore(
            &mut li,
            &["adjustable_quantity", "tax_rates", "dynamic_tax_rates"],
        );
        li.finish()?;
        let pr = s
            .prices
            .get(&price)
            .ok_or_else(|| ApiError::no_such("price", &price, &name))?;
        if mode == "subscription" && pr.recurring.is_none() {
            return Err(ApiError::invalid(
                "You must specify at least one recurring price in `subscription` mode when using prices.",
            )
            .param("line_items"));
        }
        lines.push(CheckoutLine { price, quantity });
    }
    let customer = p.opt_nonempty("customer")?;
    let customer_email = p.opt_nonempty("customer_email")?;
    let client_reference_id = p.opt_nonempty("client_reference_id")?;
    let success_url = p.opt_nonempty("success_url")?;
    let cancel_url = p.opt_nonempty("cancel_url")?;
    let metadata = p.metadata("metadata")?;
    let pmt = p.str_list("payment_method_types")?;
    for (i, t) in pmt.iter().flatten().enumerate() {
        if !enums::CHECKOUT_PAYMENT_METHOD_TYPES.contains(&t.as_str()) {
            return Err(enums::one_of(
                &format!("payment_method_types[{i}]"),
                enums::CHECKOUT_PAYMENT_METHOD_TYPES,
            ));
        }
    }
    let locale = p.opt_nonempty("locale")?;
    let allow_promotion_codes = p.bool("allow_promotion_codes")?;
    let billing_address_collection = p.opt_nonempty("billing_address_collection")?;
    let customer_creation = p.opt_nonempty("customer_creation")?;
    let payment_method_collection = p.opt_nonempty("payment_method_collection")?;
    let ui_mode = p
        .opt_nonempty("ui_mode")?
        .unwrap_or_else(|| "hosted".into());
    let mut trial_days = None;
    let mut trial_end = None;
    let mut sub_md = None;
    let mut sub_desc = None;
    if let Some(mut sd) = p.sub("subscription_data")? {
        trial_days = sd.int("trial_period_days")?;
        trial_end = sd.int("trial_end")?;
        sub_md = sd.metadata("metadata")?;
        sub_desc = sd.opt_nonempty("description")?;
        ignore(
            &mut sd,
            &[
                "billing_cycle_anchor",
                "default_tax_rates",
                "proration_behavior",
                "trial_settings",
                "invoice_settings",
                "application_fee_percent",
                "on_behalf_of",
                "transfer_data",
            ],
        );
        sd.finish()?;
    }
    ignore(
        &mut p,
        &[
            "automatic_tax",
            "consent_collection",
            "custom_fields",
            "custom_text",
            "customer_update",
            "discounts",
            "expires_at",
            "invoice_creation",
            "payment_method_options",
            "phone_number_collection",
            "shipping_address_collection",
            "submit_type",
            "tax_id_collection",
            "currency",
            "saved_payment_method_options",
            "payment_method_configuration",
            "return_url",
            "redirect_on_completion",
            "subscription_data",
        ],
    );
    p.finish()?;
    if mode != "subscription" {
        return Err(ApiError::invalid(
            "The simulator supports Checkout in `subscription` mode only.",
        )
        .param("mode"));
    }
    if lines.is_empty() {
        return Err(ApiError::missing_param("line_items"));
    }
    if ui_mode == "hosted" && success_url.is_none() {
        return Err(ApiError::missing_param("success_url"));
    }
    if let Some(c) = &customer {
        need_customer(s, c, "customer")?;
        if customer_email.is_some() {
            return Err(ApiError::invalid(
                "You may only specify one of these parameters: customer, customer_email.",
            )
            .param("customer_email"));
        }
    }
    if let Some(d) = trial_days {
        if !(1..=730).contains(&d) {
            return Err(
                ApiError::invalid("The trial_period_days must be between 1 and 730.")
                    .param("subscription_data[trial_period_days]"),
            );
        }
    }
    let now = s.now();
    let currency = s
        .prices
        .get(&lines[0].price)
        .map(|x| x.currency.clone())
        .unwrap_or_else(|| "usd".into());
    for t in pmt.iter().flatten() {
        if let Some(only) = enums::payment_method_currency(t) {
            if currency != only {
                return Err(ApiError::invalid(format!(
                    "Invalid currency options `{currency}`. The payment method `{t}` only supports the following currencies: `{only}`."
                ))
                .param("payment_method_types"));
            }
        }
    }
    let amount_total = lines
        .iter()
        .map(|l| s.prices.get(&l.price).map(|x| x.unit_amount).unwrap_or(0) * l.quantity)
        .sum();
    let id = new_id("cs_test");
    s.checkout_sessions.insert(
        id.clone(),
        CheckoutSession {
            id: id.clone(),
            created: now,
            expires_at: now + 86_400,
            mode,
            status: "open".into(),
            payment_status: "unpaid".into(),
            customer,
            customer_email,
            client_reference_id,
            success_url,
            cancel_url,
            line_items: lines,
            trial_period_days: trial_days,
            trial_end,
            sub_metadata: new_metadata(sub_md),
            sub_description: sub_desc,
            metadata: new_metadata(metadata),
            payment_method_types: pmt.unwrap_or_else(|| vec!["card".into()]),
            subscription: None,
            invoice: None,
            currency,
            amount_total,
            locale,
            allow_promotion_codes,
            billing_address_collection,
            customer_creation,
            payment_method_collection,
            ui_mode,
        },
    );
    Ok(s.render_id(&id).unwrap_or_default())
}

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.opt_nonempty("customer")?;
    let status = p.opt_nonempty("status")?;
    let subscription = p.opt_nonempty("subscription")?;
    let created = created_filter(&mut p)?;
    ignore(
        &mut p,
        &["customer_details", "payment_intent", "payment_link"],
    );
    let base: Box<dyn Iterator<Item = (&String, &CheckoutSession)>> = match &customer {
        Some(c) => Box::new(s.checkout_sessions.with("customer", c)),
        None => Box::new(s.checkout_sessions.newest_first()),
    };
    let items = base
        .filter(|(_, x)| {
            customer
                .as_ref()
                .is_none_or(|c| x.customer.as_ref() == Some(c))
        })
        .filter(|(_, x)| status.as_ref().is_none_or(|st| x.status == *st))
        .filter(|(_, x)| {
            subscription
                .as_ref()
                .is_none_or(|v| x.subscription.as_ref() == Some(v))
        })
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/checkout/sessions", |x| {
        s.render_checkout(x)
    })?;
    p.finish()?;
    Ok(out)
}

fn line_items(s: &Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let cs = s
        .checkout_sessions
        .get(id)
        .ok_or_else(|| ApiError::no_such("checkout.session", id, "session"))?;
    let lines: Vec<Value> = cs
        .line_items
        .iter()
        .enumerate()
        .map(|(i, l)| s.render_checkout_line(cs, i, l))
        .collect();
    let items: Vec<(&str, &Value)> = lines
        .iter()
        .map(|l| (l["id"].as_str().unwrap_or(""), l))
        .collect();
    let url = format!("/v1/checkout/sessions/{id}/line_items");
    let out = list_page(items.into_iter(), &mut p, &url, |v| (*v).clone())?;
    p.finish()?;
    Ok(out)
}

fn expire(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    let mut cs = s
        .checkout_sessions
        .get_mut(id)
        .ok_or_else(|| ApiError::no_such("checkout.session", id, "session"))?;
    if cs.status != "open" {
        return Err(ApiError::invalid(format!(
            "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
            cs.status
        )));
    }
    cs.status = "expired".into();
    drop(cs);
    let v = s.render_id(id).unwrap_or_default();
    s.emit("checkout.session.expired", v.clone(), None);
    Ok(v)
}
