//! What moves an invoice through its states: finalize, send, pay, void, mark_uncollectible.
//! The money itself (totals, charges, events) is in `billing`.

use serde_json::Value;

use super::payment_methods::resolve_pm;
use super::{ignore, Route};
use crate::billing;
use crate::error::ApiError;
use crate::form::Params;
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/invoices/{id}/finalize", finalize),
    Route::new("POST /v1/invoices/{id}/send", send),
    Route::new("POST /v1/invoices/{id}/pay", pay),
    Route::new("POST /v1/invoices/{id}/void", void),
    Route::new(
        "POST /v1/invoices/{id}/mark_uncollectible",
        mark_uncollectible,
    ),
];

fn finalize(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
    let auto_advance = p.bool("auto_advance")?;
    p.finish()?;
    if let (Some(a), Some(mut inv)) = (auto_advance, s.invoices.get_mut(id)) {
        inv.auto_advance = a;
    }
    billing::finalize(s, id)?;
    Ok(s.render_id(id).unwrap_or_default())
}

fn send(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
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

fn pay(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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
    billing::attempt_payment(s, id, pm, billing::Attempt::Api)?;
    Ok(s.render_id(id).unwrap_or_default())
}

fn void(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    billing::void(s, id)?;
    Ok(s.render_id(id).unwrap_or_default())
}

fn mark_uncollectible(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    billing::mark_uncollectible(s, id)
}
