//! The `/v1` resources. Every handler reads all of its parameters and calls `finish` (which
//! rejects unknown ones) before it changes anything, so a rejected request has no effect.

use serde_json::{json, Value};

use crate::billing::{self, NewSub};
use crate::enums;
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Metadata, Param, Params};
use crate::ids::new_id;
use crate::model::*;
use crate::store::{created_filter, list_page, search_result, Query, Store, API_VERSION};

/// Route patterns, literal segments before `{id}` where both could match.
pub const ROUTES: &[&str] = &[
    "POST /v1/customers",
    "GET /v1/customers",
    "GET /v1/customers/search",
    "GET /v1/customers/{id}",
    "POST /v1/customers/{id}",
    "DELETE /v1/customers/{id}",
    "GET /v1/customers/{id}/payment_methods",
    "GET /v1/payment_methods/{id}",
    "POST /v1/payment_methods/{id}/attach",
    "POST /v1/products",
    "GET /v1/products",
    "GET /v1/products/search",
    "GET /v1/products/{id}",
    "POST /v1/products/{id}",
    "POST /v1/prices",
    "GET /v1/prices",
    "GET /v1/prices/search",
    "GET /v1/prices/{id}",
    "POST /v1/prices/{id}",
    "POST /v1/subscriptions",
    "GET /v1/subscriptions",
    "GET /v1/subscriptions/search",
    "GET /v1/subscriptions/{id}",
    "POST /v1/subscriptions/{id}",
    "DELETE /v1/subscriptions/{id}",
    "POST /v1/invoiceitems",
    "GET /v1/invoiceitems",
    "GET /v1/invoiceitems/{id}",
    "POST /v1/invoiceitems/{id}",
    "DELETE /v1/invoiceitems/{id}",
    "POST /v1/invoices",
    "GET /v1/invoices",
    "GET /v1/invoices/search",
    "POST /v1/invoices/create_preview",
    "GET /v1/invoices/{id}",
    "POST /v1/invoices/{id}",
    "DELETE /v1/invoices/{id}",
    "GET /v1/invoices/{id}/lines",
    "POST /v1/invoices/{id}/finalize",
    "POST /v1/invoices/{id}/send",
    "POST /v1/invoices/{id}/pay",
    "POST /v1/invoices/{id}/void",
    "POST /v1/invoices/{id}/mark_uncollectible",
    "POST /v1/checkout/sessions",
    "GET /v1/checkout/sessions",
    "GET /v1/checkout/sessions/{id}",
    "GET /v1/checkout/sessions/{id}/line_items",
    "POST /v1/checkout/sessions/{id}/expire",
    "POST /v1/billing_portal/sessions",
    "POST /v1/billing_portal/configurations",
    "GET /v1/billing_portal/configurations",
    "GET /v1/billing_portal/configurations/{id}",
    "POST /v1/billing_portal/configurations/{id}",
    "POST /v1/webhook_endpoints",
    "GET /v1/webhook_endpoints",
    "GET /v1/webhook_endpoints/{id}",
    "POST /v1/webhook_endpoints/{id}",
    "DELETE /v1/webhook_endpoints/{id}",
    "GET /v1/events",
    "GET /v1/events/{id}",
];

/// Finds the route for a request: its pattern and the `{id}` captured, if any.
pub fn route(method: &str, path: &str) -> Option<(&'static str, Option<String>)> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    'routes: for pat in ROUTES {
        let (m, p) = pat.split_once(' ')?;
        if m != method {
            continue;
        }
        let psegs: Vec<&str> = p.split('/').skip(1).collect();
        if psegs.len() != segs.len() {
            continue;
        }
        let mut id = None;
        for (a, b) in psegs.iter().zip(&segs) {
            if *a == "{id}" {
                if b.is_empty() {
                    continue 'routes;
                }
                id = Some(b.to_string());
            } else if a != b {
                continue 'routes;
            }
        }
        return Some((pat, id));
    }
    None
}

pub fn execute(
    s: &mut Store,
    pattern: &str,
    id: Option<String>,
    p: Params,
) -> Result<Value, ApiError> {
    let id = id.unwrap_or_default();
    let id = id.as_str();
    match pattern {
        "POST /v1/customers" => customer_create(s, p),
        "GET /v1/customers" => customer_list(s, p),
        "GET /v1/customers/search" => {
            search(s, p, "/v1/customers/search", &s.customers, true, |s, c| {
                s.render_customer(c)
            })
        }
        "GET /v1/customers/{id}" => retrieve(s, p, id, "customer", "id"),
        "POST /v1/customers/{id}" => customer_update(s, id, p),
        "DELETE /v1/customers/{id}" => customer_delete(s, id, p),
        "GET /v1/customers/{id}/payment_methods" => customer_pms(s, id, p),
        "GET /v1/payment_methods/{id}" => retrieve(s, p, id, "payment_method", "payment_method"),
        "POST /v1/payment_methods/{id}/attach" => pm_attach(s, id, p),
        "POST /v1/products" => product_create(s, p),
        "GET /v1/products" => product_list(s, p),
        "GET /v1/products/search" => {
            search(s, p, "/v1/products/search", &s.products, false, |s, x| {
                s.render_product(x)
            })
        }
        "GET /v1/products/{id}" => retrieve(s, p, id, "product", "id"),
        "POST /v1/products/{id}" => product_update(s, id, p),
        "POST /v1/prices" => price_create(s, p),
        "GET /v1/prices" => price_list(s, p),
        "GET /v1/prices/search" => search(s, p, "/v1/prices/search", &s.prices, false, |s, x| {
            s.render_price(x)
        }),
        "GET /v1/prices/{id}" => retrieve(s, p, id, "price", "price"),
        "POST /v1/prices/{id}" => price_update(s, id, p),
        "POST /v1/subscriptions" => sub_create(s, p),
        "GET /v1/subscriptions" => sub_list(s, p),
        "GET /v1/subscriptions/search" => search(
            s,
            p,
            "/v1/subscriptions/search",
            &s.subscriptions,
            false,
            |s, x| s.render_sub(x),
        ),
        "GET /v1/subscriptions/{id}" => retrieve(s, p, id, "subscription", "id"),
        "POST /v1/subscriptions/{id}" => sub_update(s, id, p),
        "DELETE /v1/subscriptions/{id}" => sub_cancel(s, id, p),
        "POST /v1/invoiceitems" => ii_create(s, p),
        "GET /v1/invoiceitems" => ii_list(s, p),
        "GET /v1/invoiceitems/{id}" => retrieve(s, p, id, "invoiceitem", "id"),
        "POST /v1/invoiceitems/{id}" => ii_update(s, id, p),
        "DELETE /v1/invoiceitems/{id}" => ii_delete(s, id, p),
        "POST /v1/invoices" => invoice_create(s, p),
        "GET /v1/invoices" => invoice_list(s, p),
        "GET /v1/invoices/search" => {
            search(s, p, "/v1/invoices/search", &s.invoices, false, |s, x| {
                s.render_invoice(x)
            })
        }
        "POST /v1/invoices/create_preview" => invoice_preview(s, p),
        "GET /v1/invoices/{id}" => retrieve(s, p, id, "invoice", "invoice"),
        "POST /v1/invoices/{id}" => invoice_update(s, id, p),
        "DELETE /v1/invoices/{id}" => invoice_delete(s, id, p),
        "GET /v1/invoices/{id}/lines" => invoice_lines(s, id, p),
        "POST /v1/invoices/{id}/finalize" => invoice_finalize(s, id, p),
        "POST /v1/invoices/{id}/send" => invoice_send(s, id, p),
        "POST /v1/invoices/{id}/pay" => invoice_pay(s, id, p),
        "POST /v1/invoices/{id}/void" => invoice_void(s, id, p),
        "POST /v1/invoices/{id}/mark_uncollectible" => invoice_uncollectible(s, id, p),
        "POST /v1/checkout/sessions" => checkout_create(s, p),
        "GET /v1/checkout/sessions" => checkout_list(s, p),
        "GET /v1/checkout/sessions/{id}" => retrieve(s, p, id, "checkout.session", "session"),
        "GET /v1/checkout/sessions/{id}/line_items" => checkout_line_items(s, id, p),
        "POST /v1/checkout/sessions/{id}/expire" => checkout_expire(s, id, p),
        "POST /v1/billing_portal/sessions" => portal_session_create(s, p),
        "POST /v1/billing_portal/configurations" => portal_config_create(s, p),
        "GET /v1/billing_portal/configurations" => portal_config_list(s, p),
        "GET /v1/billing_portal/configurations/{id}" => {
            retrieve(s, p, id, "billing_portal.configuration", "configuration")
        }
        "POST /v1/billing_portal/configurations/{id}" => portal_config_update(s, id, p),
        "POST /v1/webhook_endpoints" => webhook_create(s, p),
        "GET /v1/webhook_endpoints" => webhook_list(s, p),
        "GET /v1/webhook_endpoints/{id}" => {
            retrieve(s, p, id, "webhook_endpoint", "webhook_endpoint")
        }
        "POST /v1/webhook_endpoints/{id}" => webhook_update(s, id, p),
        "DELETE /v1/webhook_endpoints/{id}" => webhook_delete(s, id, p),
        "GET /v1/events" => event_list(s, p),
        "GET /v1/events/{id}" => retrieve(s, p, id, "event", "id"),
        _ => Err(ApiError::invalid("Unrecognized request URL.")),
    }
}

// ---- shared ---------------------------------------------------------------------------------

fn retrieve(s: &Store, p: Params, id: &str, kind: &str, param: &str) -> Result<Value, ApiError> {
    p.finish()?;
    let v = s.render_id(id).filter(|v| v["object"] == kind);
    v.ok_or_else(|| ApiError::no_such(kind, id, param))
}

/// Stripe's search over one table. A query with a required `metadata['k']:'v'` clause (or
/// `email:'v'` on customers) reads only the rows listed under that key; others read every row.
fn search<T: Row>(
    s: &Store,
    mut p: Params,
    url: &str,
    table: &Table<T>,
    email_indexed: bool,
    render: impl Fn(&Store, &T) -> Value,
) -> Result<Value, ApiError> {
    let query = Query::parse(&p.req_str("query")?)?;
    let hits: Vec<Value> = match query.index_key(email_indexed) {
        Some((kind, value)) => table
            .with(kind, &value)
            .map(|(_, x)| render(s, x))
            .filter(|v| query.matches(v))
            .collect(),
        None => table
            .newest_first()
            .map(|(_, x)| render(s, x))
            .filter(|v| query.matches(v))
            .collect(),
    };
    let out = search_result(hits, &mut p, url)?;
    p.finish()?;
    Ok(out)
}

fn deleted(id: &str, object: &str) -> Value {
    json!({"id": id, "object": object, "deleted": true})
}

fn need_customer(s: &Store, id: &str, param: &str) -> Result<(), ApiError> {
    if s.customers.contains(id) {
        Ok(())
    } else {
        Err(ApiError::no_such("customer", id, param))
    }
}

/// A payment method for `customer`, given where Stripe wants one already attached
/// (`invoice_settings[default_payment_method]`, a subscription's or invoice's
/// `default_payment_method`, `/pay`'s `payment_method`). Stripe's test tokens (`pm_card_visa`)
/// make a new card attached to the customer; an existing payment method must belong to the
/// customer, as Stripe refuses one that does not.
fn resolve_pm(s: &mut Store, pm: &str, customer: &str, param: &str) -> Result<String, ApiError> {
    if let Some(number) = billing::magic_pm_number(pm) {
        return Ok(billing::attach_card(s, customer, number, false));
    }
    match s.payment_methods.get(pm) {
        Some(x) if x.customer.as_deref() == Some(customer) => Ok(pm.to_string()),
        Some(_) => Err(not_attached(pm, param)),
        None => Err(ApiError::no_such("PaymentMethod", pm, param)),
    }
}

/// An existing payment method that must already belong to `customer` (an invoice's
/// `default_payment_method`: "It must belong to the customer associated with the invoice").
fn check_owned_pm(s: &Store, pm: &str, customer: &str, param: &str) -> Result<(), ApiError> {
    match s.payment_methods.get(pm) {
        Some(x) if x.customer.as_deref() == Some(customer) => Ok(()),
        Some(_) => Err(not_attached(pm, param)),
        None => Err(ApiError::no_such("PaymentMethod", pm, param)),
    }
}

fn not_attached(pm: &str, param: &str) -> ApiError {
    ApiError::invalid(format!(
        "The customer does not have a payment method with the ID {pm}. The payment method must be attached to the customer."
    ))
    .param(param)
}

/// Attaches a payment method to `customer` (customer create's `payment_method`,
/// `/v1/payment_methods/{id}/attach`): a test token makes a new card; an existing one must not
/// belong to another customer.
fn attach_pm(s: &mut Store, pm: &str, customer: &str, param: &str) -> Result<String, ApiError> {
    if let Some(number) = billing::magic_pm_number(pm) {
        return Ok(billing::attach_card(s, customer, number, false));
    }
    match s.payment_methods.get_mut(pm) {
        Some(x) if x.customer.as_deref().is_some_and(|c| c != customer) => Err(ApiError::invalid(
            "The payment method you provided has already been attached to a customer.",
        )
        .param(param)),
        Some(mut x) => {
            x.customer = Some(customer.to_string());
            Ok(pm.to_string())
        }
        None => Err(ApiError::no_such("PaymentMethod", pm, param)),
    }
}

fn ignore(p: &mut Params, keys: &[&str]) {
    for k in keys {
        let _ = p.raw(k);
    }
}

// ---- customers ------------------------------------------------------------------------------

/// Customer parameters accepted and not modelled.
const CUSTOMER_IGNORED: &[&str] = &["address", "shipping", "tax_exempt", "balance", "source"];

/// `invoice_settings[default_payment_method]`, as given (other invoice settings are accepted, not modelled).
fn customer_default_pm(p: &mut Params) -> Result<Option<String>, ApiError> {
    let Some(mut is) = p.sub("invoice_settings")? else {
        return Ok(None);
    };
    let v = is.str("default_payment_method")?;
    ignore(&mut is, &["custom_fields", "footer", "rendering_options"]);
    is.finish()?;
    Ok(v)
}

fn customer_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let email = p.opt_nonempty("email")?;
    let name = p.opt_nonempty("name")?;
    let description = p.opt_nonempty("description")?;
    let phone = p.opt_nonempty("phone")?;
    let metadata = p.metadata("metadata")?;
    let pm = p.opt_nonempty("payment_method")?;
    // An empty default payment method means none on create.
    let default_pm = customer_default_pm(&mut p)?.filter(|d| !d.is_empty());
    let locales = p.str_list("preferred_locales")?.unwrap_or_default();
    ignore(&mut p, CUSTOMER_IGNORED);
    p.finish()?;
    let id = billing::new_customer(s, email, name);
    let mut pm_id = None;
    if let Some(pm) = &pm {
        pm_id = Some(attach_pm(s, pm, &id, "payment_method")?);
    }
    let default = match default_pm {
        Some(d) if Some(&d) == pm.as_ref() => pm_id,
        Some(d) => Some(resolve_pm(
            s,
            &d,
            &id,
            "invoice_settings[default_payment_method]",
        )?),
        None => None,
    };
    if let Some(mut c) = s.customers.get_mut(&id) {
        c.description = description;
        c.phone = phone;
        c.metadata = new_metadata(metadata);
        c.preferred_locales = locales;
        c.default_payment_method = default;
    }
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("customer.created", v.clone(), None);
    Ok(v)
}

fn customer_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    need_customer(s, id, "id")?;
    let email = p.str("email")?;
    let name = p.str("name")?;
    let description = p.str("description")?;
    let phone = p.str("phone")?;
    let metadata = p.metadata("metadata")?;
    // On update an empty value is kept: it clears the default.
    let default_pm = customer_default_pm(&mut p)?;
    let locales = p.str_list("preferred_locales")?;
    ignore(&mut p, CUSTOMER_IGNORED);
    p.finish()?;
    let before = s.render_id(id).unwrap_or_default();
    let default = match default_pm {
        Some(d) if d.is_empty() => Some(None),
        Some(d) => Some(Some(resolve_pm(
            s,
            &d,
            id,
            "invoice_settings[default_payment_method]",
        )?)),
        None => None,
    };
    let mut c = s
        .customers
        .get_mut(id)
        .ok_or_else(|| ApiError::no_such("customer", id, "id"))?;
    let opt = |v: String| if v.is_empty() { None } else { Some(v) };
    if let Some(v) = email {
        c.email = opt(v);
    }
    if let Some(v) = name {
        c.name = opt(v);
    }
    if let Some(v) = description {
        c.description = opt(v);
    }
    if let Some(v) = phone {
        c.phone = opt(v);
    }
    if let Some(m) = metadata {
        apply_metadata(&mut c.metadata, m);
    }
    if let Some(l) = locales {
        c.preferred_locales = l;
    }
    if let Some(d) = default {
        c.default_payment_method = d;
    }
    drop(c);
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("customer.updated", before, after.clone());
    Ok(after)
}

fn customer_delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    need_customer(s, id, "id")?;
    let v = s.render_id(id).unwrap_or_default();
    // Stripe cancels the customer's subscriptions when the customer goes.
    let subs: Vec<String> = s
        .subscriptions
        .with("customer", id)
        .filter(|(_, x)| x.status != "canceled" && x.status != "incomplete_expired")
        .map(|(i, _)| i.clone())
        .collect();
    for sid in subs {
        billing::end_subscription(s, &sid, "cancellation_requested");
    }
    s.customers.remove(id);
    s.emit("customer.deleted", v, None);
    Ok(deleted(id, "customer"))
}

fn customer_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let email = p.opt_nonempty("email")?;
    let created = created_filter(&mut p)?;
    ignore(&mut p, &["test_clock"]);
    let base: Box<dyn Iterator<Item = (&String, &Customer)>> = match &email {
        Some(e) => Box::new(s.customers.with("email", &e.to_ascii_lowercase())),
        None => Box::new(s.customers.newest_first()),
    };
    let items = base
        .filter(|(_, c)| {
            email
                .as_ref()
                .is_none_or(|e| c.email.as_deref() == Some(e.as_str()))
        })
        .filter(|(_, c)| created(c.created))
        .map(|(id, c)| (id.as_str(), c));
    let out = list_page(items, &mut p, "/v1/customers", |c| s.render_customer(c))?;
    p.finish()?;
    Ok(out)
}

fn customer_pms(s: &Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    need_customer(s, id, "customer")?;
    let _ = p.opt_nonempty("type")?;
    let items = s
        .payment_methods
        .with("customer", id)
        .map(|(i, x)| (i.as_str(), x));
    let url = format!("/v1/customers/{id}/payment_methods");
    let out = list_page(items, &mut p, &url, |x| s.render_pm(x))?;
    p.finish()?;
    Ok(out)
}

fn pm_attach(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.req_str("customer")?;
    p.finish()?;
    need_customer(s, &customer, "customer")?;
    let pm = attach_pm(s, id, &customer, "payment_method")?;
    let v = s.render_id(&pm).unwrap_or_default();
    if billing::magic_pm_number(id).is_none() {
        s.emit("payment_method.attached", v.clone(), None);
    }
    Ok(v)
}

// ---- products and prices ----------------------------------------------------------------

fn product_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let name = p.req_str("name")?;
    let explicit_id = p.opt_nonempty("id")?;
    let description = p.opt_nonempty("description")?;
    let active = p.bool("active")?.unwrap_or(true);
    let metadata = p.metadata("metadata")?;
    let unit_label = p.opt_nonempty("unit_label")?;
    let statement_descriptor = p.opt_nonempty("statement_descriptor")?;
    let tax_code = p.opt_nonempty("tax_code")?;
    let url = p.opt_nonempty("url")?;
    let images = p.str_list("images")?.unwrap_or_default();
    let default_price = match p.sub("default_price_data")? {
        Some(mut d) => {
            let currency = d.req_str("currency")?.to_lowercase();
            let unit_amount = d.int("unit_amount")?.unwrap_or(0);
            let recurring = read_recurring(&mut d)?;
            d.finish()?;
            Some((currency, unit_amount, recurring))
        }
        None => None,
    };
    ignore(
        &mut p,
        &[
            "type",
            "shippable",
            "package_dimensions",
            "marketing_features",
            "tax_behavior",
        ],
    );
    p.finish()?;
    let id = explicit_id.unwrap_or_else(|| new_id("prod"));
    if s.products.contains(&id) {
        return Err(
            ApiError::invalid(format!("Product already exists with ID {id}"))
                .code("resource_already_exists")
                .param("id"),
        );
    }
    let now = s.now();
    s.products.insert(
        id.clone(),
        Product {
            id: id.clone(),
            created: now,
            updated: now,
            name,
            description,
            active,
            metadata: new_metadata(metadata),
            default_price: None,
            unit_label,
            statement_descriptor,
            tax_code,
            url,
            images,
        },
    );
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("product.created", v, None);
    if let Some((currency, unit_amount, recurring)) = default_price {
        let price = insert_price(
            s,
            &id,
            currency,
            unit_amount,
            recurring,
            None,
            Metadata::new(),
            None,
        );
        if let Some(mut x) = s.products.get_mut(&id) {
            x.default_price = Some(price);
        }
    }
    Ok(s.render_id(&id).unwrap_or_default())
}

fn product_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    if !s.products.contains(id) {
        return Err(ApiError::no_such("product", id, "id"));
    }
    let name = p.opt_nonempty("name")?;
    let description = p.str("description")?;
    let active = p.bool("active")?;
    let metadata = p.metadata("metadata")?;
    let default_price = p.opt_nonempty("default_price")?;
    ignore(
        &mut p,
        &[
            "unit_label",
            "statement_descriptor",
            "tax_code",
            "url",
            "images",
            "marketing_features",
        ],
    );
    p.finish()?;
    if let Some(dp) = &default_price {
        if !s.prices.contains(dp) {
            return Err(ApiError::no_such("price", dp, "default_price"));
        }
    }
    let before = s.render_id(id).unwrap_or_default();
    let now = s.now();
    if let Some(mut x) = s.products.get_mut(id) {
        if let Some(v) = name {
            x.name = v;
        }
        if let Some(v) = description {
            x.description = if v.is_empty() { None } else { Some(v) };
        }
        if let Some(v) = active {
            x.active = v;
        }
        if let Some(m) = metadata {
            apply_metadata(&mut x.metadata, m);
        }
        if default_price.is_some() {
            x.default_price = default_price;
        }
        x.updated = now;
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("product.updated", before, after.clone());
    Ok(after)
}

fn product_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let active = p.bool("active")?;
    let ids = p.str_list("ids")?;
    let created = created_filter(&mut p)?;
    ignore(&mut p, &["shippable", "url"]);
    let items = s
        .products
        .newest_first()
        .filter(|(_, x)| active.is_none_or(|a| x.active == a))
        .filter(|(id, _)| ids.as_ref().is_none_or(|l| l.contains(id)))
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/products", |x| s.render_product(x))?;
    p.finish()?;
    Ok(out)
}

fn read_recurring(p: &mut Params) -> Result<Option<Recurring>, ApiError> {
    match p.sub("recurring")? {
        Some(mut r) => {
            let interval = r
                .enum_str("interval", &["day", "week", "month", "year"])?
                .ok_or_else(|| ApiError::missing_param(&r.name("interval")))?;
            let interval_count = r.int("interval_count")?.unwrap_or(1).max(1) as u32;
            let usage_type = r
                .enum_str("usage_type", &["licensed", "metered"])?
                .unwrap_or_else(|| "licensed".into());
            let trial_period_days = r.int("trial_period_days")?;
            ignore(&mut r, &["aggregate_usage", "meter"]);
            r.finish()?;
            Ok(Some(Recurring {
                interval,
                interval_count,
                usage_type,
                trial_period_days,
            }))
        }
        None => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_price(
    s: &mut Store,
    product: &str,
    currency: String,
    unit_amount: i64,
    recurring: Option<Recurring>,
    lookup_key: Option<String>,
    metadata: Metadata,
    nickname: Option<String>,
) -> String {
    let id = new_id("price");
    let now = s.now();
    s.prices.insert(
        id.clone(),
        Price {
            id: id.clone(),
            created: now,
            product: product.to_string(),
            currency,
            unit_amount,
            active: true,
            nickname,
            lookup_key,
            metadata,
            recurring,
            tax_behavior: "unspecified".into(),
        },
    );
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("price.created", v, None);
    id
}

fn price_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let currency = p.req_str("currency")?.to_lowercase();
    let unit_amount = match p.int("unit_amount")? {
        Some(v) => v,
        None => match p.opt_nonempty("unit_amount_decimal")? {
            Some(d) => d.parse::<f64>().map(|f| f.round() as i64).map_err(|_| {
                ApiError::invalid("Invalid decimal: unit_amount_decimal")
                    .param("unit_amount_decimal")
            })?,
            None => return Err(ApiError::missing_param("unit_amount")),
        },
    };
    if unit_amount < 0 {
        return Err(
            ApiError::invalid("This value must be greater than or equal to 0.")
                .param("unit_amount"),
        );
    }
    let product = p.opt_nonempty("product")?;
    let product_data = match p.sub("product_data")? {
        Some(mut d) => {
            let name = d.req_str("name")?;
            let md = d.metadata("metadata")?;
            ignore(
                &mut d,
                &[
                    "active",
                    "statement_descriptor",
                    "tax_code",
                    "unit_label",
                    "id",
                ],
            );
            d.finish()?;
            Some((name, md))
        }
        None => None,
    };
    let recurring = read_recurring(&mut p)?;
    let lookup_key = p.opt_nonempty("lookup_key")?;
    let transfer = p.bool("transfer_lookup_key")?.unwrap_or(false);
    let metadata = p.metadata("metadata")?;
    let nickname = p.opt_nonempty("nickname")?;
    let active = p.bool("active")?;
    let tax_behavior = p.enum_str("tax_behavior", &["exclusive", "inclusive", "unspecified"])?;
    ignore(&mut p, &["billing_scheme"]);
    p.finish()?;
    let product_id = match (product, product_data) {
        (Some(id), _) => {
            if !s.products.contains(&id) {
                return Err(ApiError::no_such("product", &id, "product"));
            }
            id
        }
        (None, Some((name, md))) => {
            let id = new_id("prod");
            let now = s.now();
            s.products.insert(
                id.clone(),
                Product {
                    id: id.clone(),
                    created: now,
                    updated: now,
                    name,
                    description: None,
                    active: true,
                    metadata: new_metadata(md),
                    default_price: None,
                    unit_label: None,
                    statement_descriptor: None,
                    tax_code: None,
                    url: None,
                    images: Vec::new(),
                },
            );
            let v = s.render_id(&id).unwrap_or_default();
            s.emit("product.created", v, None);
            id
        }
        (None, None) => return Err(ApiError::missing_param("product")),
    };
    if let Some(key) = &lookup_key {
        let holder = s
            .prices
            .with("lookup_key", key)
            .map(|(id, _)| id.clone())
            .next();
        if let Some(holder) = holder {
            if !transfer {
                return Err(ApiError::invalid(format!(
                    "A price (`{holder}`) already uses that lookup key."
                ))
                .param("lookup_key"));
            }
            let before = s.render_id(&holder).unwrap_or_default();
            if let Some(mut x) = s.prices.get_mut(&holder) {
                x.lookup_key = None;
            }
            let after = s.render_id(&holder).unwrap_or_default();
            s.emit_update("price.updated", before, after);
        }
    }
    let id = insert_price(
        s,
        &product_id,
        currency,
        unit_amount,
        recurring,
        lookup_key,
        new_metadata(metadata),
        nickname,
    );
    if let Some(mut x) = s.prices.get_mut(&id) {
        if let Some(a) = active {
            x.active = a;
        }
        if let Some(t) = tax_behavior {
            x.tax_behavior = t;
        }
    }
    Ok(s.render_id(&id).unwrap_or_default())
}

fn price_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    if !s.prices.contains(id) {
        return Err(ApiError::no_such("price", id, "price"));
    }
    let active = p.bool("active")?;
    let metadata = p.metadata("metadata")?;
    let nickname = p.str("nickname")?;
    let lookup_key = p.str("lookup_key")?;
    let transfer = p.bool("transfer_lookup_key")?.unwrap_or(false);
    ignore(&mut p, &["tax_behavior"]);
    p.finish()?;
    if let Some(key) = lookup_key.as_ref().filter(|k| !k.is_empty()) {
        let holder = s
            .prices
            .with("lookup_key", key)
            .find(|(pid, _)| *pid != id)
            .map(|(pid, _)| pid.clone());
        if let Some(h) = holder {
            if !transfer {
                return Err(ApiError::invalid(format!(
                    "A price (`{h}`) already uses that lookup key."
                ))
                .param("lookup_key"));
            }
            if let Some(mut x) = s.prices.get_mut(&h) {
                x.lookup_key = None;
            }
        }
    }
    let before = s.render_id(id).unwrap_or_default();
    if let Some(mut x) = s.prices.get_mut(id) {
        if let Some(a) = active {
            x.active = a;
        }
        if let Some(m) = metadata {
            apply_metadata(&mut x.metadata, m);
        }
        if let Some(n) = nickname {
            x.nickname = if n.is_empty() { None } else { Some(n) };
        }
        if let Some(k) = lookup_key {
            x.lookup_key = if k.is_empty() { None } else { Some(k) };
        }
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("price.updated", before, after.clone());
    Ok(after)
}

fn price_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let active = p.bool("active")?;
    let product = p.opt_nonempty("product")?;
    let currency = p.opt_nonempty("currency")?;
    let kind = p.enum_str("type", &["one_time", "recurring"])?;
    let keys = p.str_list("lookup_keys")?;
    let created = created_filter(&mut p)?;
    ignore(&mut p, &["recurring"]);
    let base: Box<dyn Iterator<Item = (&String, &Price)>> = match &product {
        Some(pr) => Box::new(s.prices.with("product", pr)),
        None => Box::new(s.prices.newest_first()),
    };
    let items = base
        .filter(|(_, x)| active.is_none_or(|a| x.active == a))
        .filter(|(_, x)| product.as_ref().is_none_or(|v| x.product == *v))
        .filter(|(_, x)| currency.as_ref().is_none_or(|v| x.currency == *v))
        .filter(|(_, x)| {
            kind.as_deref()
                .is_none_or(|k| (k == "recurring") == x.recurring.is_some())
        })
        .filter(|(_, x)| {
            keys.as_ref()
                .is_none_or(|l| x.lookup_key.as_ref().is_some_and(|k| l.contains(k)))
        })
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/prices", |x| s.render_price(x))?;
    p.finish()?;
    Ok(out)
}

// ---- subscriptions --------------------------------------------------------------------------

fn read_items(
    s: &Store,
    p: &mut Params,
    key: &str,
) -> Result<Vec<(String, i64, Metadata)>, ApiError> {
    let mut out = Vec::new();
    for mut it in p.list_of_maps(key)?.unwrap_or_default() {
        let price = match it.opt_nonempty("price")? {
            Some(v) => v,
            None => it.req_str("plan")?,
        };
        let qty = it.int("quantity")?.unwrap_or(1);
        let md = it.metadata("metadata")?;
        ignore(&mut it, &["tax_rates", "discounts", "billing_thresholds"]);
        let name = it.name("price");
        it.finish()?;
        let pr = s
            .prices
            .get(&price)
            .ok_or_else(|| ApiError::no_such("price", &price, &name))?;
        if pr.recurring.is_none() {
            return Err(ApiError::invalid("The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.")
            .param(name));
        }
        out.push((price, qty, new_metadata(md)));
    }
    Ok(out)
}

fn sub_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.req_str("customer")?;
    let items = read_items(s, &mut p, "items")?;
    let trial_days = p.int("trial_period_days")?;
    let trial_end_raw = p.str("trial_end")?;
    let metadata = p.metadata("metadata")?;
    let collection_method = p
        .enum_str(
            "collection_method",
            &["charge_automatically", "send_invoice"],
        )?
        .unwrap_or_else(|| "charge_automatically".into());
    let days_until_due = p.int("days_until_due")?;
    let default_pm = p.opt_nonempty("default_payment_method")?;
    let description = p.opt_nonempty("description")?;
    let cancel_at_period_end = p.bool("cancel_at_period_end")?.unwrap_or(false);
    let trial_from_plan = p.bool("trial_from_plan")?.unwrap_or(false);
    let payment_behavior = p
        .enum_str(
            "payment_behavior",
            &[
                "allow_incomplete",
                "default_incomplete",
                "error_if_incomplete",
                "pending_if_incomplete",
            ],
        )?
        .unwrap_or_else(|| "allow_incomplete".into());
    ignore(
        &mut p,
        &[
            "proration_behavior",
            "off_session",
            "payment_settings",
            "automatic_tax",
            "currency",
            "billing_cycle_anchor",
            "expand",
        ],
    );
    p.finish()?;
    need_customer(s, &customer, "customer")?;
    if items.is_empty() {
        return Err(ApiError::missing_param("items"));
    }
    let now = s.now();
    let trial_end = match trial_end_raw.as_deref() {
        Some("now") => None,
        Some("") | None => trial_days.map(|d| now + d * 86_400).or_else(|| {
            if trial_from_plan {
                s.prices
                    .get(&items[0].0)
                    .and_then(|x| x.recurring.as_ref())
                    .and_then(|r| r.trial_period_days)
                    .map(|d| now + d * 86_400)
            } else {
                None
            }
        }),
        Some(t) => {
            let t: i64 = t.parse().map_err(|_| {
                ApiError::invalid(format!("Invalid timestamp: {t}")).param("trial_end")
            })?;
            if t <= now {
                return Err(ApiError::invalid(
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                )
                .param("trial_end"));
            }
            Some(t)
        }
    };
    if collection_method == "send_invoice" && days_until_due.is_none() {
        return Err(ApiError::missing_param("days_until_due"));
    }
    let default_payment_method = match default_pm {
        Some(pm) => Some(resolve_pm(s, &pm, &customer, "default_payment_method")?),
        None => None,
    };
    let id = billing::create_subscription(
        s,
        NewSub {
            customer,
            items,
            trial_end,
            metadata: new_metadata(metadata),
            collection_method,
            days_until_due,
            default_payment_method,
            description,
            cancel_at_period_end,
            payment_behavior,
        },
    )?;
    Ok(s.render_id(&id).unwrap_or_default())
}

fn sub_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let Some(sub) = s.subscriptions.get(id).cloned() else {
        return Err(ApiError::no_such("subscription", id, "id"));
    };
    let cape = p.bool("cancel_at_period_end")?;
    let cancel_at = p.str("cancel_at")?;
    let metadata = p.metadata("metadata")?;
    let default_pm = p.str("default_payment_method")?;
    let description = p.str("description")?;
    let trial_end = p.str("trial_end")?;
    let items = p.list_of_maps("items")?;
    let pause = read_pause_collection(&mut p)?;
    let details = match p.sub("cancellation_details")? {
        Some(mut d) => {
            let c = d.str("comment")?;
            let f = d.str("feedback")?;
            d.finish()?;
            Some((c, f))
        }
        None => None,
    };
    ignore(
        &mut p,
        &[
            "proration_behavior",
            "payment_behavior",
            "off_session",
            "payment_settings",
            "collection_method",
            "days_until_due",
        ],
    );
    p.finish()?;
    if sub.status == "canceled" || sub.status == "incomplete_expired" {
        return Err(ApiError::invalid(
            "A canceled subscription can only update its cancellation_details and metadata.",
        )
        .code("resource_missing")
        .status(400));
    }
    let mut new_items: Option<Vec<SubItem>> = None;
    let mut quantity_changed = false;
    if let Some(list) = items {
        let mut cur = sub.items.clone();
        for mut it in list {
            let iid = it.opt_nonempty("id")?;
            let price = it.opt_nonempty("price")?;
            let qty = it.int("quantity")?;
            quantity_changed |= qty.is_some();
            let del = it.bool("deleted")?.unwrap_or(false);
            ignore(&mut it, &["metadata", "tax_rates", "discounts"]);
            it.finish()?;
            if let Some(pr) = &price {
                if !s.prices.contains(pr) {
                    return Err(ApiError::no_such("price", pr, "items[0][price]"));
                }
            }
            match iid.and_then(|i| cur.iter().position(|x| x.id == i)) {
                Some(pos) if del => {
                    cur.remove(pos);
                }
                Some(pos) => {
                    if let Some(pr) = price {
                        cur[pos].price = pr;
                    }
                    if let Some(q) = qty {
                        cur[pos].quantity = q;
                    }
                }
                None => {
                    if let Some(pr) = price {
                        cur.push(SubItem {
                            id: new_id("si"),
                            created: s.now(),
                            price: pr,
                            quantity: qty.unwrap_or(1),
                            metadata: Metadata::new(),
                        });
                    }
                }
            }
        }
        new_items = Some(cur);
    }
    if quantity_changed {
        s.count_quantity_update(id)?;
    }
    let default_payment_method = match default_pm {
        Some(pm) if pm.is_empty() => Some(None),
        Some(pm) => Some(Some(resolve_pm(
            s,
            &pm,
            &sub.customer,
            "default_payment_method",
        )?)),
        None => None,
    };
    let before = s.render_id(id).unwrap_or_default();
    if let Some(on) = cape {
        billing::set_cancel_at_period_end(s, id, on);
    }
    let now = s.now();
    let mut end_trial_now = false;
    if let Some(mut x) = s.subscriptions.get_mut(id) {
        if let Some(ca) = cancel_at {
            if ca.is_empty() {
                x.cancel_at = None;
                x.canceled_at = None;
            } else {
                let t: i64 = ca
                    .parse()
                    .map_err(|_| ApiError::invalid("Invalid timestamp").param("cancel_at"))?;
                x.cancel_at = Some(t);
                x.canceled_at = Some(now);
            }
        }
        if let Some(m) = metadata {
            apply_metadata(&mut x.metadata, m);
        }
        if let Some(d) = default_payment_method {
            x.default_payment_method = d;
        }
        if let Some(d) = description {
            x.description = if d.is_empty() { None } else { Some(d) };
        }
        if let Some(pc) = pause {
            x.pause_collection = pc;
        }
        if let Some(items) = new_items {
            x.items = items;
        }
        if let Some((c, f)) = details {
            if c.is_some() {
                x.cancellation_comment = c.filter(|v| !v.is_empty());
            }
            if f.is_some() {
                x.cancellation_feedback = f.filter(|v| !v.is_empty());
            }
        }
        match trial_end.as_deref() {
            Some("now") if x.status == "trialing" => end_trial_now = true,
            Some(t) if !t.is_empty() && x.status == "trialing" => {
                if let Ok(t) = t.parse::<i64>() {
                    x.trial_end = Some(t);
                    x.trial_will_end_sent = false;
                    x.current_period_end = t;
                    x.billing_cycle_anchor = t;
                }
            }
            _ => {}
        }
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("customer.subscription.updated", before, after);
    if end_trial_now {
        if let Some(mut x) = s.subscriptions.get_mut(id) {
            x.trial_end = Some(now);
            x.current_period_end = now;
            x.billing_cycle_anchor = now;
        }
        billing::advance_to(s, now);
    }
    Ok(s.render_id(id).unwrap_or_default())
}

/// `pause_collection[behavior]` (required) and `pause_collection[resumes_at]`; `pause_collection=`
/// (empty) clears it: `Some(None)`.
fn read_pause_collection(p: &mut Params) -> Result<Option<Option<PauseCollection>>, ApiError> {
    if p.raw_is_empty_str("pause_collection") {
        let _ = p.raw("pause_collection");
        return Ok(Some(None));
    }
    let Some(mut pc) = p.sub("pause_collection")? else {
        return Ok(None);
    };
    let behavior = pc
        .enum_str("behavior", &["keep_as_draft", "mark_uncollectible", "void"])?
        .ok_or_else(|| ApiError::missing_param("pause_collection[behavior]"))?;
    let resumes_at = pc.int("resumes_at")?;
    pc.finish()?;
    Ok(Some(Some(PauseCollection {
        behavior,
        resumes_at,
    })))
}

fn sub_cancel(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let _ = p.bool("invoice_now")?;
    let _ = p.bool("prorate")?;
    let details = match p.sub("cancellation_details")? {
        Some(mut d) => {
            let c = d.opt_nonempty("comment")?;
            let f = d.opt_nonempty("feedback")?;
            d.finish()?;
            Some((c, f))
        }
        None => None,
    };
    p.finish()?;
    let Some(mut sub) = s.subscriptions.get_mut(id) else {
        return Err(ApiError::no_such("subscription", id, "id"));
    };
    if sub.status == "canceled" {
        return Err(ApiError::no_such("subscription", id, "id").status(404));
    }
    if let Some((c, f)) = details {
        sub.cancellation_comment = c;
        sub.cancellation_feedback = f;
    }
    drop(sub);
    billing::end_subscription(s, id, "cancellation_requested");
    Ok(s.render_id(id).unwrap_or_default())
}

fn sub_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.opt_nonempty("customer")?;
    let status = p.opt_nonempty("status")?;
    let price = p.opt_nonempty("price")?;
    let created = created_filter(&mut p)?;
    ignore(
        &mut p,
        &[
            "collection_method",
            "current_period_end",
            "current_period_start",
            "test_clock",
            "automatic_tax",
        ],
    );
    let base: Box<dyn Iterator<Item = (&String, &Subscription)>> = match &customer {
        Some(c) => Box::new(s.subscriptions.with("customer", c)),
        None => Box::new(s.subscriptions.newest_first()),
    };
    let items = base
        .filter(|(_, x)| customer.as_ref().is_none_or(|c| x.customer == *c))
        .filter(|(_, x)| match status.as_deref() {
            None => x.status != "canceled" && x.status != "incomplete_expired",
            Some("all") => true,
            Some(st) => x.status == st,
        })
        .filter(|(_, x)| {
            price
                .as_ref()
                .is_none_or(|pr| x.items.iter().any(|i| i.price == *pr))
        })
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/subscriptions", |x| s.render_sub(x))?;
    p.finish()?;
    Ok(out)
}

// ---- invoice items --------------------------------------------------------------------------

fn ii_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.req_str("customer")?;
    let invoice = p.opt_nonempty("invoice")?;
    let subscription = p.opt_nonempty("subscription")?;
    let amount = p.int("amount")?;
    let unit_amount = p.int("unit_amount")?;
    let unit_amount_decimal = p.opt_nonempty("unit_amount_decimal")?;
    let quantity = p.int("quantity")?;
    let price = p.opt_nonempty("price")?;
    let currency = p.opt_nonempty("currency")?.map(|c| c.to_lowercase());
    let description = p.opt_nonempty("description")?;
    let metadata = p.metadata("metadata")?;
    let discountable = p.bool("discountable")?.unwrap_or(true);
    let period = match p.sub("period")? {
        Some(mut pp) => {
            let start = pp
                .int("start")?
                .ok_or_else(|| ApiError::missing_param("period[start]"))?;
            let end = pp
                .int("end")?
                .ok_or_else(|| ApiError::missing_param("period[end]"))?;
            pp.finish()?;
            Some((start, end))
        }
        None => None,
    };
    let pricing_price = match p.sub("pricing")? {
        Some(mut pp) => {
            let v = pp.opt_nonempty("price")?;
            pp.finish()?;
            v
        }
        None => None,
    };
    ignore(
        &mut p,
        &[
            "tax_rates",
            "tax_behavior",
            "tax_code",
            "discounts",
            "price_data",
        ],
    );
    p.finish()?;
    need_customer(s, &customer, "customer")?;
    let price = price.or(pricing_price);
    if let Some(inv) = &invoice {
        match s.invoices.get(inv) {
            None => return Err(ApiError::no_such("invoice", inv, "invoice")),
            Some(i) if i.status != "draft" => {
                return Err(ApiError::invalid(format!(
                    "Invoice `{inv}` is not editable: its status is {}.",
                    i.status
                ))
                .code("invoice_not_editable")
                .param("invoice"))
            }
            Some(i) if i.customer != customer => {
                return Err(
                    ApiError::invalid("The invoice belongs to a different customer.")
                        .param("invoice"),
                )
            }
            Some(i) if i.item_ids.len() + i.sub_lines.len() >= MAX_INVOICE_ITEMS => {
                return Err(too_many_items().param("invoice"))
            }
            _ => {}
        }
    }
    let qty = quantity.unwrap_or(1);
    let (amount, unit_dec, currency) = if let Some(pr) = &price {
        let x = s
            .prices
            .get(pr)
            .ok_or_else(|| ApiError::no_such("price", pr, "price"))?;
        (
            x.unit_amount * qty,
            x.unit_amount.to_string(),
            x.currency.clone(),
        )
    } else {
        let currency = currency.ok_or_else(|| ApiError::missing_param("currency"))?;
        match (amount, unit_amount, unit_amount_decimal) {
            (Some(a), _, _) => {
                if quantity.is_some() {
                    return Err(ApiError::invalid(
                        "You may only specify one of these parameters: amount, quantity.",
                    )
                    .param("amount"));
                }
                (a, a.to_string(), currency)
            }
            (None, Some(u), _) => (u * qty, u.to_string(), currency),
            (None, None, Some(d)) => {
                let f: f64 = d.parse().map_err(|_| {
                    ApiError::invalid(format!("Invalid decimal: {d}")).param("unit_amount_decimal")
                })?;
                ((f * qty as f64).round() as i64, d, currency)
            }
            _ => return Err(ApiError::missing_param("amount")),
        }
    };
    if let Some(inv) = invoice.as_ref().and_then(|i| s.invoices.get(i)) {
        if inv.currency != currency {
            return Err(ApiError::invalid(format!(
                "The currency of this invoice item ({currency}) does not match the currency of invoice {} ({}).",
                inv.id, inv.currency
            ))
            .param("currency"));
        }
    }
    if let Some(sub) = subscription.as_ref() {
        match s.subscriptions.get(sub) {
            None => return Err(ApiError::no_such("subscription", sub, "subscription")),
            Some(x) if x.customer != customer => {
                return Err(not_customers("subscription", sub, &customer))
            }
            _ => {}
        }
    }
    let now = s.now();
    let id = new_id("ii");
    let (ps, pe) = period.unwrap_or((now, now));
    s.invoiceitems.insert(
        id.clone(),
        InvoiceItem {
            id: id.clone(),
            created: now,
            customer,
            invoice: invoice.clone(),
            subscription,
            amount,
            unit_amount_decimal: unit_dec,
            quantity: qty,
            currency,
            description,
            metadata: new_metadata(metadata),
            price,
            period_start: ps,
            period_end: pe,
            discountable,
            line_id: new_id("il"),
        },
    );
    if let Some(inv) = &invoice {
        if let Some(mut i) = s.invoices.get_mut(inv) {
            i.item_ids.push(id.clone());
        }
    }
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("invoiceitem.created", v.clone(), None);
    Ok(v)
}

fn ii_editable(s: &Store, id: &str) -> Result<(), ApiError> {
    let ii = s
        .invoiceitems
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoiceitem", id, "id"))?;
    if let Some(inv) = ii.invoice.as_ref().and_then(|i| s.invoices.get(i)) {
        if inv.status != "draft" {
            return Err(ApiError::invalid(format!(
                "The invoice item `{id}` is attached to an invoice that is no longer editable."
            ))
            .code("invoice_not_editable"));
        }
    }
    Ok(())
}

fn ii_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let amount = p.int("amount")?;
    let description = p.str("description")?;
    let metadata = p.metadata("metadata")?;
    let quantity = p.int("quantity")?;
    ignore(
        &mut p,
        &["discountable", "period", "tax_rates", "unit_amount_decimal"],
    );
    p.finish()?;
    ii_editable(s, id)?;
    let before = s.render_id(id).unwrap_or_default();
    if let Some(mut ii) = s.invoiceitems.get_mut(id) {
        if let Some(a) = amount {
            ii.amount = a;
            ii.unit_amount_decimal = a.to_string();
        }
        if let Some(q) = quantity {
            let unit: f64 = ii.unit_amount_decimal.parse().unwrap_or(0.0);
            ii.quantity = q;
            ii.amount = (unit * q as f64).round() as i64;
        }
        if let Some(d) = description {
            ii.description = if d.is_empty() { None } else { Some(d) };
        }
        if let Some(m) = metadata {
            apply_metadata(&mut ii.metadata, m);
        }
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update("invoiceitem.updated", before, after.clone());
    Ok(after)
}

fn ii_delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    ii_editable(s, id)?;
    let v = s.render_id(id).unwrap_or_default();
    if let Some(ii) = s.invoiceitems.remove(id) {
        if let Some(mut inv) = ii.invoice.and_then(|i| s.invoices.get_mut(&i)) {
            inv.item_ids.retain(|x| x != id);
        }
    }
    s.emit("invoiceitem.deleted", v, None);
    Ok(deleted(id, "invoiceitem"))
}

fn ii_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.opt_nonempty("customer")?;
    let invoice = p.opt_nonempty("invoice")?;
    let pending = p.bool("pending")?;
    let created = created_filter(&mut p)?;
    let base: Box<dyn Iterator<Item = (&String, &InvoiceItem)>> =
        match (&invoice, &customer, pending) {
            (Some(i), _, _) => Box::new(s.invoiceitems.with("invoice", i)),
            (None, Some(c), Some(true)) => Box::new(s.invoiceitems.with("pending", c)),
            (None, Some(c), _) => Box::new(s.invoiceitems.with("customer", c)),
            _ => Box::new(s.invoiceitems.newest_first()),
        };
    let items = base
        .filter(|(_, x)| customer.as_ref().is_none_or(|c| x.customer == *c))
        .filter(|(_, x)| {
            invoice
                .as_ref()
                .is_none_or(|i| x.invoice.as_ref() == Some(i))
        })
        .filter(|(_, x)| pending.is_none_or(|pe| x.invoice.is_none() == pe))
        .filter(|(_, x)| created(x.created))
        .map(|(id, x)| (id.as_str(), x));
    let out = list_page(items, &mut p, "/v1/invoiceitems", |x| {
        s.render_invoiceitem(x)
    })?;
    p.finish()?;
    Ok(out)
}

// ---- invoices ----------------------------------------------------------------------------------

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

/// Stripe refuses more than 250 invoice items on one invoice (API change of 2016-02-22).
const MAX_INVOICE_ITEMS: usize = 250;

fn too_many_items() -> ApiError {
    ApiError::invalid("An invoice can have at most 250 invoice items.")
}

fn not_customers(kind: &str, id: &str, customer: &str) -> ApiError {
    ApiError::invalid(format!(
        "The {kind} {id} does not belong to the customer {customer}."
    ))
    .param(kind)
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

fn invoice_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
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
fn invoice_preview(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
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

fn invoice_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

fn invoice_delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
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

fn invoice_lines(s: &Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

fn invoice_finalize(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let auto_advance = p.bool("auto_advance")?;
    p.finish()?;
    if let (Some(a), Some(mut inv)) = (auto_advance, s.invoices.get_mut(id)) {
        inv.auto_advance = a;
    }
    billing::finalize(s, id)?;
    Ok(s.render_id(id).unwrap_or_default())
}

fn invoice_send(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    match inv.status.as_str() {
        "draft" => billing::finalize(s, id)?,
        "void" | "uncollectible" => {
            return Err(ApiError::invalid(format!(
                "You can't send an invoice with status {}.",
                inv.status
            ))
            .code("invoice_not_editable"))
        }
        _ => {}
    }
    if let Some(mut inv) = s.invoices.get_mut(id) {
        inv.sent = true;
    }
    let v = s.render_id(id).unwrap_or_default();
    s.emit("invoice.sent", v.clone(), None);
    Ok(v)
}

fn invoice_pay(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let out_of_band = p.bool("paid_out_of_band")?.unwrap_or(false);
    let pm = p.opt_nonempty("payment_method")?;
    let forgive = p.bool("forgive")?;
    ignore(&mut p, &["off_session", "source", "mandate"]);
    p.finish()?;
    let _ = forgive;
    let inv = s
        .invoices
        .get(id)
        .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))?;
    match inv.status.as_str() {
        "paid" => return Err(ApiError::invalid("Invoice is already paid")),
        "void" => {
            return Err(
                ApiError::invalid("This invoice has been voided and cannot be paid.")
                    .code("invoice_not_editable"),
            )
        }
        _ => {}
    }
    // Nothing to charge: refused before a draft is finalized, so nothing changes.
    let charges = !out_of_band && pm.is_none() && s.invoice_total(inv) > 0;
    if charges && billing::invoice_pm(s, inv).is_none() {
        return Err(billing::no_payment_method());
    }
    if inv.status == "draft" {
        billing::finalize(s, id)?;
    }
    if s.invoices.get(id).is_some_and(|i| i.status == "paid") {
        return Ok(s.render_id(id).unwrap_or_default());
    }
    if out_of_band {
        billing::mark_paid_out_of_band(s, id);
        return Ok(s.render_id(id).unwrap_or_default());
    }
    let customer = s
        .invoices
        .get(id)
        .map(|i| i.customer.clone())
        .unwrap_or_default();
    let pm = match pm {
        Some(pm) => Some(resolve_pm(s, &pm, &customer, "payment_method")?),
        None => None,
    };
    billing::attempt_payment(s, id, pm, false)?;
    Ok(s.render_id(id).unwrap_or_default())
}

fn invoice_void(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    billing::void(s, id)?;
    Ok(s.render_id(id).unwrap_or_default())
}

fn invoice_uncollectible(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    billing::mark_uncollectible(s, id)
}

fn invoice_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
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

// ---- checkout and portal ------------------------------------------------------------------------

fn checkout_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
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

fn checkout_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
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

fn checkout_line_items(s: &Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

fn checkout_expire(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
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

fn default_features() -> Value {
    json!({
        "customer_update": {"allowed_updates": ["email"], "enabled": true},
        "invoice_history": {"enabled": true},
        "payment_method_update": {"enabled": true, "payment_method_configuration": null},
        "subscription_cancel": {
            "cancellation_reason": {"enabled": false, "options": []},
            "enabled": true,
            "mode": "at_period_end",
            "proration_behavior": "none",
        },
        "subscription_update": {
            "default_allowed_updates": [],
            "enabled": false,
            "proration_behavior": "none",
            "schedule_at_period_end": {"conditions": []},
            "trial_update_behavior": "end_trial",
            "billing_cycle_anchor": null,
        },
    })
}

fn param_to_json(p: &Param) -> Value {
    match p {
        Param::Str(s) => match s.as_str() {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(s),
        },
        Param::List(l) => Value::Array(l.iter().map(param_to_json).collect()),
        Param::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), param_to_json(v)))
                .collect(),
        ),
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

pub fn ensure_default_portal_config(s: &mut Store) -> String {
    if let Some((id, _)) = s.portal_configs.newest_first().find(|(_, c)| c.is_default) {
        return id.clone();
    }
    let id = new_id("bpc");
    let now = s.now();
    s.portal_configs.insert(
        id.clone(),
        PortalConfig {
            id: id.clone(),
            created: now,
            updated: now,
            active: true,
            is_default: true,
            name: None,
            default_return_url: None,
            headline: None,
            privacy_policy_url: None,
            terms_of_service_url: None,
            features: default_features(),
            metadata: Metadata::new(),
        },
    );
    id
}

struct ConfigParams {
    features: Option<Value>,
    headline: Option<Option<String>>,
    privacy: Option<Option<String>>,
    terms: Option<Option<String>>,
    default_return_url: Option<String>,
    metadata: Option<std::collections::BTreeMap<String, Option<String>>>,
    name: Option<String>,
    active: Option<bool>,
}

fn read_config(p: &mut Params) -> Result<ConfigParams, ApiError> {
    let features = p.raw("features").map(|f| param_to_json(&f));
    let (mut headline, mut privacy, mut terms) = (None, None, None);
    if let Some(mut bp) = p.sub("business_profile")? {
        headline = bp
            .str("headline")?
            .map(|v| Some(v).filter(|x| !x.is_empty()));
        privacy = bp
            .str("privacy_policy_url")?
            .map(|v| Some(v).filter(|x| !x.is_empty()));
        terms = bp
            .str("terms_of_service_url")?
            .map(|v| Some(v).filter(|x| !x.is_empty()));
        bp.finish()?;
    }
    let default_return_url = p.str("default_return_url")?;
    let metadata = p.metadata("metadata")?;
    let name = p.str("name")?;
    let active = p.bool("active")?;
    ignore(p, &["login_page"]);
    Ok(ConfigParams {
        features,
        headline,
        privacy,
        terms,
        default_return_url,
        metadata,
        name,
        active,
    })
}

fn apply_config(c: &mut PortalConfig, cp: ConfigParams, now: i64) {
    if let Some(f) = cp.features {
        merge(&mut c.features, f);
    }
    if let Some(v) = cp.headline {
        c.headline = v;
    }
    if let Some(v) = cp.privacy {
        c.privacy_policy_url = v;
    }
    if let Some(v) = cp.terms {
        c.terms_of_service_url = v;
    }
    if let Some(v) = cp.default_return_url {
        c.default_return_url = Some(v).filter(|x| !x.is_empty());
    }
    if let Some(m) = cp.metadata {
        apply_metadata(&mut c.metadata, m);
    }
    if let Some(v) = cp.name {
        c.name = Some(v).filter(|x| !x.is_empty());
    }
    if let Some(a) = cp.active {
        c.active = a;
    }
    c.updated = now;
}

fn portal_config_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let cp = read_config(&mut p)?;
    p.finish()?;
    if cp.features.is_none() {
        return Err(ApiError::missing_param("features"));
    }
    let now = s.now();
    let is_default = !s.portal_configs.newest_first().any(|(_, c)| c.is_default);
    let id = new_id("bpc");
    let mut c = PortalConfig {
        id: id.clone(),
        created: now,
        updated: now,
        active: true,
        is_default,
        name: None,
        default_return_url: None,
        headline: None,
        privacy_policy_url: None,
        terms_of_service_url: None,
        features: default_features(),
        metadata: Metadata::new(),
    };
    apply_config(&mut c, cp, now);
    s.portal_configs.insert(id.clone(), c);
    let v = s.render_id(&id).unwrap_or_default();
    s.emit("billing_portal.configuration.created", v.clone(), None);
    Ok(v)
}

fn portal_config_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let cp = read_config(&mut p)?;
    p.finish()?;
    let now = s.now();
    let before = s
        .render_id(id)
        .ok_or_else(|| ApiError::no_such("billing_portal.configuration", id, "configuration"))?;
    if let Some(mut c) = s.portal_configs.get_mut(id) {
        apply_config(&mut c, cp, now);
    }
    let after = s.render_id(id).unwrap_or_default();
    s.emit_update(
        "billing_portal.configuration.updated",
        before,
        after.clone(),
    );
    Ok(after)
}

fn portal_config_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let active = p.bool("active")?;
    let is_default = p.bool("is_default")?;
    let items: Vec<(&str, &PortalConfig)> = s
        .portal_configs
        .newest_first()
        .filter(|(_, c)| active.is_none_or(|a| c.active == a))
        .filter(|(_, c)| is_default.is_none_or(|d| c.is_default == d))
        .map(|(id, c)| (id.as_str(), c))
        .collect();
    let out = list_page(
        items.into_iter(),
        &mut p,
        "/v1/billing_portal/configurations",
        |c| s.render_portal_config(c),
    )?;
    p.finish()?;
    Ok(out)
}

fn portal_session_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let customer = p.req_str("customer")?;
    let return_url = p.opt_nonempty("return_url")?;
    let configuration = p.opt_nonempty("configuration")?;
    let locale = p.opt_nonempty("locale")?;
    ignore(&mut p, &["flow_data", "on_behalf_of"]);
    p.finish()?;
    need_customer(s, &customer, "customer")?;
    let configuration = match configuration {
        Some(c) => {
            if !s.portal_configs.contains(&c) {
                return Err(ApiError::no_such(
                    "billing_portal.configuration",
                    &c,
                    "configuration",
                ));
            }
            c
        }
        None => ensure_default_portal_config(s),
    };
    let return_url = return_url.or_else(|| {
        s.portal_configs
            .get(&configuration)
            .and_then(|c| c.default_return_url.clone())
    });
    let id = new_id("bps");
    let now = s.now();
    s.portal_sessions.insert(
        id.clone(),
        PortalSession {
            id: id.clone(),
            created: now,
            customer,
            configuration,
            return_url,
            locale,
        },
    );
    Ok(s.render_id(&id).unwrap_or_default())
}

// ---- webhook endpoints and events ------------------------------------------------------------

fn webhook_create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let url = p.req_str("url")?;
    let events = p
        .str_list("enabled_events")?
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::missing_param("enabled_events"))?;
    let description = p.opt_nonempty("description")?;
    let metadata = p.metadata("metadata")?;
    let api_version = p.opt_nonempty("api_version")?;
    if let Some(v) = &api_version {
        if !enums::API_VERSIONS.contains(&v.as_str()) {
            return Err(enums::one_of("api_version", enums::API_VERSIONS));
        }
    }
    ignore(&mut p, &["connect"]);
    p.finish()?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::invalid(format!("Invalid URL: {url}")).param("url"));
    }
    let id = new_id("we");
    let now = s.now();
    let w = WebhookEndpoint {
        id: id.clone(),
        created: now,
        url,
        secret: new_id("whsec"),
        enabled_events: events,
        description,
        status: "enabled".into(),
        api_version: api_version.or(Some(API_VERSION.to_string())),
        metadata: new_metadata(metadata),
    };
    let v = s.render_webhook_endpoint(&w, true);
    s.webhook_endpoints.insert(id, w);
    Ok(v)
}

fn webhook_update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let url = p.opt_nonempty("url")?;
    let events = p.str_list("enabled_events")?;
    let description = p.str("description")?;
    let disabled = p.bool("disabled")?;
    let metadata = p.metadata("metadata")?;
    p.finish()?;
    let mut w = s
        .webhook_endpoints
        .get_mut(id)
        .ok_or_else(|| ApiError::no_such("webhook_endpoint", id, "webhook_endpoint"))?;
    if let Some(u) = url {
        w.url = u;
    }
    if let Some(e) = events.filter(|e| !e.is_empty()) {
        w.enabled_events = e;
    }
    if let Some(d) = description {
        w.description = Some(d).filter(|x| !x.is_empty());
    }
    if let Some(d) = disabled {
        w.status = if d { "disabled" } else { "enabled" }.into();
    }
    if let Some(m) = metadata {
        apply_metadata(&mut w.metadata, m);
    }
    let snapshot: WebhookEndpoint = (*w).clone();
    drop(w);
    Ok(s.render_webhook_endpoint(&snapshot, false))
}

fn webhook_delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    s.webhook_endpoints
        .remove(id)
        .ok_or_else(|| ApiError::no_such("webhook_endpoint", id, "webhook_endpoint"))?;
    Ok(deleted(id, "webhook_endpoint"))
}

fn webhook_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let items: Vec<(&str, &WebhookEndpoint)> = s
        .webhook_endpoints
        .newest_first()
        .map(|(id, w)| (id.as_str(), w))
        .collect();
    let out = list_page(items.into_iter(), &mut p, "/v1/webhook_endpoints", |w| {
        s.render_webhook_endpoint(w, false)
    })?;
    p.finish()?;
    Ok(out)
}

fn event_list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
    let kind = p.opt_nonempty("type")?;
    let types = p.str_list("types")?;
    let created = created_filter(&mut p)?;
    let _ = p.bool("delivery_success")?;
    let matches = |t: &str| {
        let one = |pat: &str| match pat.strip_suffix('*') {
            Some(prefix) => t.starts_with(prefix),
            None => t == pat,
        };
        kind.as_deref().is_none_or(one) && types.as_ref().is_none_or(|l| l.iter().any(|x| one(x)))
    };
    let exact = kind.as_ref().filter(|k| !k.ends_with('*'));
    let base: Box<dyn Iterator<Item = (&String, &EventRec)>> = match exact {
        Some(k) => Box::new(s.events.with("type", k)),
        None => Box::new(s.events.newest_first()),
    };
    let items = base
        .filter(|(_, e)| matches(&e.kind) && created(e.created))
        .map(|(id, e)| (id.as_str(), e));
    let out = list_page(items, &mut p, "/v1/events", |e| {
        serde_json::from_str(&e.json).unwrap_or_default()
    })?;
    p.finish()?;
    Ok(out)
}
