//! Invoice items: create (pending, or on a draft invoice), retrieve, update and delete while
//! the invoice is a draft, list (by customer, invoice, `pending`).

use serde_json::Value;

use super::{deleted, ignore, need_customer, not_customers, retrieve, Route};
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Params};
use crate::ids::new_id;
use crate::listing::{created_filter, list_page};
use crate::model::InvoiceItem;
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/invoiceitems", |s, _, p| create(s, p)),
    Route::new("GET /v1/invoiceitems", |s, _, p| list(s, p)),
    Route::new("GET /v1/invoiceitems/{id}", |s, id, p| {
        retrieve(s, p, id, "invoiceitem", "id")
    }),
    Route::new("POST /v1/invoiceitems/{id}", update),
    Route::new("DELETE /v1/invoiceitems/{id}", delete),
];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
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

fn update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let amount = p.int("amount")?;
    let description = p.str("description")?;
    let metadata = p.metadata("metadata")?;
    let quantity = p.int("quantity")?;
    ignore(
        &mut p,
        &["discountable", "period", "tax_rates", "unit_amount_decimal"],
    );
    p.finish()?;
    editable(s, id)?;
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

fn delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    editable(s, id)?;
    let v = s.render_id(id).unwrap_or_default();
    if let Some(ii) = s.invoiceitems.remove(id) {
        if let Some(mut inv) = ii.invoice.and_then(|i| s.invoices.get_mut(&i)) {
            inv.item_ids.retain(|x| x != id);
        }
    }
    s.emit("invoiceitem.deleted", v, None);
    Ok(deleted(id, "invoiceitem"))
}

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
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

fn editable(s: &Store, id: &str) -> Result<(), ApiError> {
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

/// Stripe refuses more than 250 invoice items on one invoice (API change of 2016-02-22).
pub(super) const MAX_INVOICE_ITEMS: usize = 250;

pub(super) fn too_many_items() -> ApiError {
    ApiError::invalid("An invoice can have at most 250 invoice items.")
}
