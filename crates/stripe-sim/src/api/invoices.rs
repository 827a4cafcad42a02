//! Invoices: create (`pending_invoice_items_behavior`), `create_preview`, retrieve, update,
//! delete drafts, `lines`, list, search. State changes are in `invoice_actions`.

use serde_json::Value;

use super::invoice_items::{too_many_items, MAX_INVOICE_ITEMS};
use super::payment_methods::check_owned_pm;
use super::{deleted, ignore, need_customer, not_customers, retrieve, search, Route};
use crate::billing;
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Metadata, Params};
use crate::ids::new_id;
use crate::listing::{created_filter, list_page};
use crate::model::{Invoice, SubLine};
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/invoices", |s, _, p| create(s, p)),
    Route::new("GET /v1/invoices", |s, _, p| list(s, p)),
    Route::new("GET /v1/invoices/search", |s, _, p| {
        search(s, p, "/v1/invoices/search", &s.invoices, false, |s, x| {
            s.render_invoice(x)
        })
    }),
    Route::new("POST /v1/invoices/create_preview", |s, _, p| preview(s, p)),
    Route::new("GET /v1/invoices/{id}", |s, id, p| {
        retrieve(s, p, id, "invoice", "invoice")
    }),
    Route::new("POST /v1/invoices/{id}", update),
    Route::new("DELETE /v1/invoices/{id}", delete),
    Route::new("GET /v1/invoices/{id}/lines", |s, id, p| lines(s, id, p)),
];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let ip = read_invoice_params(s, &mut p)?;
    p.finish()?;
    let items = if ip.behavior == "exclude" {
        Vec::new()
    } else {
        pending_items(s, &ip.customer, ip.subscription.as_deref())
    };
    if items.len() > MAX_INVOICE_ITEMS {
        return Err(too_many_items().param("pending_invoice_items_behavior"));
    }
    if ip.behavior == "include_and_require" && items.is_empty() {
        return Err(
            ApiError::invalid(format!("Nothing to invoice for customer {}.", ip.customer))
                .code("invoice_no_customer_line_items"),
        );
    }
    if let Some(pm) = &ip.default_payment_method {
        check_owned_pm(s, pm, &ip.customer, "default_payment_method")?;
    }
    if let Some(sub) = &ip.subscription {
        s.count_sub_invoice(sub)?;
    }
    let id = new_id("in");
    for ii in &items {
        if let Some(mut x) = s.invoiceitems.get_mut(ii) {
            x.invoice = Some(id.clone());
        }
    }
    let inv = build_invoice(s, &ip, id.clone(), items);
    s.invoices.insert(id.clone(), inv);
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("invoice.created", v.clone(), None);
    Ok(v)
}

/// What the next invoice would be, without saving anything.
fn preview(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.opt_nonempty("customer")?;
    let subscription = p.opt_nonempty("subscription")?;
    ignore(
        &mut p,
        &[
            "subscription_details",
            "automatic_tax",
            "currency",
            "customer_details",
            "discounts",
            "invoice_items",
            "issuer",
            "preview_mode",
            "schedule",
            "schedule_details",
            "on_behalf_of",
        ],
    );
    p.finish()?;
    let customer = match (&customer, &subscription) {
        (Some(c), _) => c.clone(),
        (None, Some(sid)) => s
            .subscriptions
            .get(sid)
            .map(|x| x.customer.clone())
            .ok_or_else(|| ApiError::no_such("subscription", sid, "subscription"))?,
        (None, None) => return Err(ApiError::missing_param("customer")),
    };
    need_customer(s, &customer, "customer")?;
    let sub = match &subscription {
        Some(sid) => s.subscriptions.get(sid).cloned(),
        None => s
            .subscriptions
            .with("customer", &customer)
            .find(|(_, x)| x.status != "canceled")
            .map(|(_, x)| x.clone()),
    };
    let ip = InvoiceParams {
        customer: customer.clone(),
        subscription: sub.as_ref().map(|x| x.id.clone()),
        behavior: "include".into(),
        auto_advance: false,
        collection_method: "charge_automatically".into(),
        days_until_due: None,
        due_date: None,
        metadata: Metadata::new(),
        description: None,
        footer: None,
        default_payment_method: None,
        currency: None,
    };
    let items = pending_items(s, &customer, None);
    let mut inv = build_invoice(s, &ip, format!("upcoming_{}", &customer), items);
    inv.automatically_finalizes_at = None;
    if let Some(x) = &sub {
        inv.billing_reason = "upcoming".into();
        let start = x.current_period_end;
        let (interval, count) = billing::interval_of(s, &x.items[0].price);
        let end =
            crate::clock::add_intervals(x.billing_cycle_anchor, &interval, count, x.periods + 1);
        inv.period_start = x.current_period_start;
        inv.period_end = start;
        inv.currency = x.currency.clone();
        for it in &x.items {
            let unit = s.prices.get(&it.price).map(|p| p.unit_amount).unwrap_or(0);
            inv.sub_lines.push(SubLine {
                id: new_id("il_tmp"),
                subscription: x.id.clone(),
                subscription_item: it.id.clone(),
                price: it.price.clone(),
                quantity: it.quantity,
                amount: unit * it.quantity,
                description: format!(
                    "{} × {} (at {} / {interval})",
                    it.quantity,
                    billing::price_product_name(s, &it.price),
                    billing::money(unit, &x.currency)
                ),
                period_start: start,
                period_end: end,
            });
        }
    }
    let mut v = s.render_invoice(&inv);
    v["id"] = Value::Null;
    Ok(v)
}

fn update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let metadata = p.metadata("metadata")?;
    let description = p.str("description")?;
    let footer = p.str("footer")?;
    let auto_advance = p.bool("auto_advance")?;
    let collection_method = p.enum_str(
        "collection_method",
        &["charge_automatically", "send_invoice"],
    )?;
    let days_until_due = p.int("days_until_due")?;
    let due_date = p.int("due_date")?;
    let default_pm = p.str("default_payment_method")?;
    ignore(
        &mut p,
        &[
            "automatic_tax",
            "custom_fields",
            "default_tax_rates",
            "discounts",
            "payment_settings",
            "rendering",
            "statement_descriptor",
            "account_tax_ids",
        ],
    );
    p.finish()?;
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    if let Some(pm) = default_pm.as_ref().filter(|p| !p.is_empty()) {
        check_owned_pm(s, pm, &inv.customer, "default_payment_method")?;
    }
    let draft = inv.status == "draft";
    let structural = description.is_some()
        || collection_method.is_some()
        || days_until_due.is_some()
        || due_date.is_some()
        || footer.is_some();
    if !draft
        && (structural || inv.status == "void" || inv.status == "paid")
        && (structural || auto_advance.is_some())
    {
        return Err(ApiError::invalid(format!(
            "You can only update metadata on a {} invoice.",
            inv.status
        ))
        .code("invoice_not_editable"));
    }
    let before = s.render_id(id).unwrap_or_default();
    let now = s.now();
    if let Some(mut inv) = s.invoices.get_mut(id) {
        if let Some(m) = metadata {
            apply_metadata(&mut inv.metadata, m);
        }
        if let Some(d) = description {
            inv.description = if d.is_empty() { None } else { Some(d) };
        }
        if let Some(f) = footer {
            inv.footer = if f.is_empty() { None } else { Some(f) };
        }
        if let Some(a) = auto_advance {
            inv.auto_advance = a;
            inv.automatically_finalizes_at = if a && draft { Some(now + 3600) } else { None };
        }
        if let Some(c) = collection_method {
            inv.collection_method = c;
        }
        if days_until_due.is_some() {
            inv.days_until_due = days_until_due;
        }
        if due_date.is_some() {
            inv.due_date = due_date;
        }
        if let Some(pm) = default_pm {
            inv.default_payment_method = if pm.is_empty() { None } else { Some(pm) };
        }
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("invoice.updated", before, after.clone());
    Ok(after)
}

fn delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    if inv.status != "draft" {
        return Err(
            ApiError::invalid("You can only delete draft invoices.").code("invoice_not_editable")
        );
    }
    let v = s.render_id(id).unwrap_or_default();
    if let Some(inv) = s.invoices.remove(id) {
        // Their items go back to pending, as Stripe does.
        for ii in inv.item_ids {
            if let Some(mut x) = s.invoiceitems.get_mut(&ii) {
                x.invoice = None;
            }
        }
    }
    s.emit("invoice.deleted", v, None);
    Ok(deleted(id, "invoice"))
}

fn lines(s: &Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    let lines = s.invoice_lines(inv);
    let items: Vec<(&str, &Value)> = lines
        .iter()
        .map(|l| (l["id"].as_str().unwrap_or(""), l))
        .collect();
    let url = format!("/v1/invoices/{id}/lines");
    let out = list_page(items.into_iter(), &mut p, &url, |v| (*v).clone())?;
    p.finish()?;
    Ok(out)
}

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.opt_nonempty("customer")?;
    let status = p.enum_str(
        "status",
        &["draft", "open", "paid", "uncollectible", "void"],
    )?;
    let subscription = p.opt_nonempty("subscription")?;
    let collection_method = p.opt_nonempty("collection_method")?;
    let created = created_filter(&mut p)?;
    ignore(&mut p, &["due_date"]);
    let base: Box<dyn Iterator<Item = (&String, &Invoice)>> = match (&customer, &subscription) {
        (Some(c), _) => Box::new(s.invoices.with("customer", c)),
        (None, Some(sub)) => Box::new(s.invoices.with("subscription", sub)),
        _ => Box::new(s.invoices.newest_first()),
    };
    let items = base
        .filter(|(_, x)| customer.as_ref().is_none_or(|c| x.customer == *c))
        .filter(|(_, x)| status.as_ref().is_none_or(|st| x.status == *st))
        .filter(|(_, x)| {
            subscription
                .as_ref()
                .is_none_or(|v| x.subscription.as_ref() == Some(v))
        })
        .filter(|(_, x)| {
            collection_method
                .as_ref()
                .is_none_or(|v| x.collection_method == *v)
        })
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/invoices", |x| s.render_invoice(x))?;
    p.finish()?;
    Ok(out)
}

struct InvoiceParams {
    customer: String,
    subscription: Option<String>,
    behavior: String,
    auto_advance: bool,
    collection_method: String,
    days_until_due: Option<i64>,
    due_date: Option<i64>,
    metadata: Metadata,
    description: Option<String>,
    footer: Option<String>,
    default_payment_method: Option<String>,
    currency: Option<String>,
}

fn read_invoice_params(s: &Store, p: &mut Params) -> Result<InvoiceParams, ApiError> {
    let customer = p.req_str("customer")?;
    let subscription = p.opt_nonempty("subscription")?;
    let behavior = p
        .enum_str(
            "pending_invoice_items_behavior",
            &["exclude", "include", "include_and_require"],
        )?
        .unwrap_or_else(|| "exclude".into());
    let auto_advance = p.bool("auto_advance")?.unwrap_or(false);
    let collection_method = p
        .enum_str(
            "collection_method",
            &["charge_automatically", "send_invoice"],
        )?
        .unwrap_or_else(|| "charge_automatically".into());
    let days_until_due = p.int("days_until_due")?;
    let due_date = p.int("due_date")?;
    let metadata = new_metadata(p.metadata("metadata")?);
    let description = p.opt_nonempty("description")?;
    let footer = p.opt_nonempty("footer")?;
    let default_payment_method = p.opt_nonempty("default_payment_method")?;
    let currency = p.opt_nonempty("currency")?.map(|c| c.to_lowercase());
    ignore(
        p,
        &[
            "automatic_tax",
            "custom_fields",
            "default_tax_rates",
            "discounts",
            "payment_settings",
            "rendering",
            "statement_descriptor",
            "account_tax_ids",
            "shipping_cost",
            "shipping_details",
            "from_invoice",
            "issuer",
            "number",
            "effective_at",
            "default_source",
        ],
    );
    need_customer(s, &customer, "customer")?;
    if collection_method == "send_invoice" && days_until_due.is_none() && due_date.is_none() {
        return Err(ApiError::invalid(
            "Missing required param: days_until_due or due_date (required when collection_method is send_invoice).",
        )
        .code("parameter_missing")
        .param("days_until_due"));
    }
    if collection_method == "charge_automatically"
        && (days_until_due.is_some() || due_date.is_some())
    {
        return Err(ApiError::invalid(
            "Invoices with `collection_method=charge_automatically` cannot have `days_until_due` or `due_date`.",
        )
        .param("days_until_due"));
    }
    if let Some(sub) = &subscription {
        match s.subscriptions.get(sub) {
            None => return Err(ApiError::no_such("subscription", sub, "subscription")),
            Some(x) if x.customer != customer => {
                return Err(not_customers("subscription", sub, &customer))
            }
            _ => {}
        }
    }
    Ok(InvoiceParams {
        customer,
        subscription,
        behavior,
        auto_advance,
        collection_method,
        days_until_due,
        due_date,
        metadata,
        description,
        footer,
        default_payment_method,
        currency,
    })
}

fn pending_items(s: &Store, customer: &str, subscription: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = s
        .invoiceitems
        .with("pending", customer)
        .filter(|(_, ii)| subscription.is_none_or(|sid| ii.subscription.as_deref() == Some(sid)))
        .map(|(id, _)| id.clone())
        .collect();
    v.reverse();
    v
}

fn build_invoice(s: &Store, ip: &InvoiceParams, id: String, item_ids: Vec<String>) -> Invoice {
    let now = s.now();
    let currency = ip.currency.clone().unwrap_or_else(|| {
        item_ids
            .first()
            .and_then(|i| s.invoiceitems.get(i))
            .map(|ii| ii.currency.clone())
            .unwrap_or_else(|| "usd".into())
    });
    Invoice {
        subscription: ip.subscription.clone(),
        collection_method: ip.collection_method.clone(),
        days_until_due: ip.days_until_due,
        due_date: ip.due_date,
        auto_advance: ip.auto_advance,
        description: ip.description.clone(),
        footer: ip.footer.clone(),
        metadata: ip.metadata.clone(),
        item_ids,
        automatically_finalizes_at: if ip.auto_advance {
            Some(now + 3600)
        } else {
            None
        },
        default_payment_method: ip.default_payment_method.clone(),
        ..Invoice::draft(id, ip.customer.clone(), currency, now)
    }
}
