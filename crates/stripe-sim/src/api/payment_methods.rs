//! Payment methods: retrieve, attach, a customer's list; and the ownership checks every
//! resource applies to a payment method it is given.

use serde_json::Value;

use super::{need_customer, retrieve, Route};
use crate::billing;
use crate::error::ApiError;
use crate::form::Params;
use crate::listing::list_page;
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("GET /v1/customers/{id}/payment_methods", |s, id, p| {
        list_for_customer(s, id, p)
    }),
    Route::new("GET /v1/payment_methods/{id}", |s, id, p| {
        retrieve(s, p, id, "payment_method", "payment_method")
    }),
    Route::new("POST /v1/payment_methods/{id}/attach", attach),
];

fn list_for_customer(s: &Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

fn attach(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

/// A payment method for `customer`, given where Stripe wants one already attached
/// (`invoice_settings[default_payment_method]`, a subscription's or invoice's
/// `default_payment_method`, `/pay`'s `payment_method`). Stripe's test tokens (`pm_card_visa`)
/// make a new card attached to the customer; an existing payment method must belong to the
/// customer, as Stripe refuses one that does not.
pub(super) fn resolve_pm(
    s: &mut Store,
    pm: &str,
    customer: &str,
    param: &str,
) -> Result<String, ApiError> {
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
pub(super) fn check_owned_pm(
    s: &Store,
    pm: &str,
    customer: &str,
    param: &str,
) -> Result<(), ApiError> {
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
pub(super) fn attach_pm(
    s: &mut Store,
    pm: &str,
    customer: &str,
    param: &str,
) -> Result<String, ApiError> {
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
