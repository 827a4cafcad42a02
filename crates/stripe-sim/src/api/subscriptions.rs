//! Subscriptions: create, retrieve, update (items, trial, cancellation, `pause_collection`),
//! cancel, list, search. Their billing (periods, invoices, charges) is in `billing`.

use serde_json::Value;

use super::payment_methods::resolve_pm;
use super::{ignore, need_customer, retrieve, search, Route};
use crate::billing::{self, NewSub};
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Metadata, Params};
use crate::ids::new_id;
use crate::listing::{created_filter, list_page};
use crate::model::{PauseCollection, SubItem, Subscription};
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/subscriptions", |s, _, p| create(s, p)),
    Route::new("GET /v1/subscriptions", |s, _, p| list(s, p)),
    Route::new("GET /v1/subscriptions/search", |s, _, p| {
        search(
            s,
            p,
            "/v1/subscriptions/search",
            &s.subscriptions,
            false,
            |s, x| s.render_sub(x),
        )
    }),
    Route::new("GET /v1/subscriptions/{id}", |s, id, p| {
        retrieve(s, p, id, "subscription", "id")
    }),
    Route::new("POST /v1/subscriptions/{id}", update),
    Route::new("DELETE /v1/subscriptions/{id}", cancel),
];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
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
            on_session: false,
        },
    )?;
    Ok(s.render_id(&id).unwrap_or_default())
}

fn update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

fn cancel(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
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
