//! Customers: create, retrieve, update, delete, list (by `email`), search.

use serde_json::Value;

use super::payment_methods::{attach_pm, resolve_pm};
use super::{deleted, ignore, need_customer, retrieve, search, Route};
use crate::billing;
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Params};
use crate::listing::{created_filter, list_page};
use crate::model::Customer;
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/customers", |s, _, p| create(s, p)),
    Route::new("GET /v1/customers", |s, _, p| list(s, p)),
    Route::new("GET /v1/customers/search", |s, _, p| {
        search(s, p, "/v1/customers/search", &s.customers, true, |s, c| {
            s.render_customer(c)
        })
    }),
    Route::new("GET /v1/customers/{id}", |s, id, p| {
        retrieve(s, p, id, "customer", "id")
    }),
    Route::new("POST /v1/customers/{id}", update),
    Route::new("DELETE /v1/customers/{id}", delete),
];

/// Customer parameters accepted and not modelled.
const IGNORED: &[&str] = &["address", "shipping", "tax_exempt", "balance", "source"];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
    let email = p.opt_nonempty("email")?;
    let name = p.opt_nonempty("name")?;
    let description = p.opt_nonempty("description")?;
    let phone = p.opt_nonempty("phone")?;
    let metadata = p.metadata("metadata")?;
    let pm = p.opt_nonempty("payment_method")?;
    // An empty default payment method means none on create.
    let default_pm = read_default_pm(&mut p)?.filter(|d| !d.is_empty());
    let locales = p.str_list("preferred_locales")?.unwrap_or_default();
    ignore(&mut p, IGNORED);
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

fn update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    need_customer(s, id, "id")?;
    let email = p.str("email")?;
    let name = p.str("name")?;
    let description = p.str("description")?;
    let phone = p.str("phone")?;
    let metadata = p.metadata("metadata")?;
    // On update an empty value is kept: it clears the default.
    let default_pm = read_default_pm(&mut p)?;
    let locales = p.str_list("preferred_locales")?;
    ignore(&mut p, IGNORED);
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

fn delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
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

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
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

/// `invoice_settings[default_payment_method]`, as given (other invoice settings are accepted, not modelled).
fn read_default_pm(p: &mut Params) -> Result<Option<String>, ApiError> {
    let Some(mut is) = p.sub("invoice_settings")? else {
        return Ok(None);
    };
    let v = is.str("default_payment_method")?;
    ignore(&mut is, &["custom_fields", "footer", "rendering_options"]);
    is.finish()?;
    Ok(v)
}
