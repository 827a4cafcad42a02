//! `expand[]`: replaces id strings at dotted paths (`customer`, `latest_invoice`,
//! `data.customer`, `items.data.price.product`) with the objects they name, and includes
//! includable fields (an invoice's `payments`).

use serde_json::Value;

use crate::error::ApiError;
use crate::store::Store;

pub fn apply(s: &Store, v: &mut Value, paths: &[String]) -> Result<(), ApiError> {
    let mut segments: Vec<Vec<&str>> = Vec::with_capacity(paths.len());
    for path in paths {
        let segs: Vec<&str> = path.split('.').collect();
        if segs.len() > 4 {
            return Err(ApiError::invalid(format!(
                "You cannot expand more than 4 levels of a property. Property: {path}"
            ))
            .param("expand"));
        }
        segments.push(segs);
    }
    // Shorter paths first: `payments` is included before `payments.data.payment.payment_intent`
    // expands inside it, whatever order they were asked in.
    segments.sort_by_key(Vec::len);
    for segs in &segments {
        expand_at(s, v, segs);
    }
    Ok(())
}

/// An invoice's `payments` is includable: present only when asked for by name (`expand[]=payments`).
/// A path through it (`payments.data.payment.payment_intent`) expands inside it once it is included,
/// and does not include it by itself: the strict reading of Stripe's "includable".
fn include_payments(s: &Store, map: &mut serde_json::Map<String, Value>) {
    if map.contains_key("payments") {
        return;
    }
    let inv = map
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| s.invoices.get(id));
    if let Some(inv) = inv {
        map.insert("payments".into(), s.invoice_payments(inv));
    }
}

fn expand_at(s: &Store, v: &mut Value, segs: &[&str]) {
    let Some((first, rest)) = segs.split_first() else {
        return;
    };
    match v {
        Value::Array(items) => {
            for it in items {
                expand_at(s, it, segs);
            }
        }
        Value::Object(map) => {
            if *first == "payments"
                && rest.is_empty()
                && map.get("object").and_then(Value::as_str) == Some("invoice")
            {
                include_payments(s, map);
            }
            let Some(child) = map.get_mut(*first) else {
                return;
            };
            if rest.is_empty() {
                if let Value::String(id) = child {
                    if let Some(obj) = s.render_id(id) {
                        *child = obj;
                    }
                } else if let Value::Array(items) = child {
                    for it in items {
                        if let Value::String(id) = it {
                            if let Some(obj) = s.render_id(id) {
                                *it = obj;
                            }
                        }
                    }
                }
            } else {
                // Expanding through an id (e.g. `latest_invoice.customer`) expands it first.
                if let Value::String(id) = child {
                    if let Some(obj) = s.render_id(id) {
                        *child = obj;
                    }
                }
                expand_at(s, child, rest);
            }
        }
        _ => {}
    }
}
