//! The `/v1` resources, one module each, with the route table that dispatches to them. Every
//! handler reads all of its parameters and calls `finish` (which rejects unknown ones) before it
//! changes anything, so a rejected request has no effect. Authentication, idempotency, faults
//! and limits are the server's, around `execute`.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::form::Params;
use crate::model::{Row, Table};
use crate::store::{search_result, Query, Store};

mod checkout;
mod customers;
mod events;
mod invoice_actions;
mod invoice_items;
mod invoices;
mod payment_methods;
mod portal;
mod prices;
mod products;
mod subscriptions;
mod webhook_endpoints;

/// Every resource's routes.
const RESOURCES: &[&[Route]] = &[
    customers::ROUTES,
    payment_methods::ROUTES,
    products::ROUTES,
    prices::ROUTES,
    subscriptions::ROUTES,
    invoice_items::ROUTES,
    invoices::ROUTES,
    invoice_actions::ROUTES,
    checkout::ROUTES,
    portal::ROUTES,
    webhook_endpoints::ROUTES,
    events::ROUTES,
];

/// A resource handler: the store, the `{id}` captured (empty when the pattern has none) and the
/// request's parameters.
type Handler = fn(&mut Store, &str, Params) -> Result<Value, ApiError>;

/// One `/v1` route: `METHOD /path` with `{id}` standing for one id segment. The pattern is also
/// the name a request is counted and rate-limited under.
pub struct Route {
    pub pattern: &'static str,
    run: Handler,
}

impl Route {
    const fn new(pattern: &'static str, run: Handler) -> Route {
        Route { pattern, run }
    }

    /// The `{id}` captured (`Some(None)` for a pattern without one), or `None` if it does not match.
    fn matches(&self, method: &str, segs: &[&str]) -> Option<Option<String>> {
        let (m, p) = self.pattern.split_once(' ')?;
        let psegs: Vec<&str> = p.split('/').skip(1).collect();
        if m != method || psegs.len() != segs.len() {
            return None;
        }
        let mut id = None;
        for (a, b) in psegs.iter().zip(segs) {
            if *a == "{id}" {
                if b.is_empty() {
                    return None;
                }
                id = Some(b.to_string());
            } else if a != b {
                return None;
            }
        }
        Some(id)
    }
}

/// Finds the route for a request: the route and the `{id}` captured, if any.
pub fn route(method: &str, path: &str) -> Option<(&'static Route, Option<String>)> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    RESOURCES
        .iter()
        .flat_map(|table| table.iter())
        .filter_map(|r| r.matches(method, &segs).map(|id| (r, id)))
        // A literal segment wins over `{id}`, as in axum's router (`/v1/customers/search` is
        // not a customer), so the tables need no particular order.
        .min_by_key(|(_, id)| id.is_some())
}

pub fn execute(
    s: &mut Store,
    route: &Route,
    id: Option<String>,
    p: Params,
) -> Result<Value, ApiError> {
    (route.run)(s, id.as_deref().unwrap_or_default(), p)
}

// ---- shared by the resources ------------------------------------------------------------------

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

/// A subscription (or other object) named with a customer it does not belong to.
fn not_customers(kind: &str, id: &str, customer: &str) -> ApiError {
    ApiError::invalid(format!(
        "The {kind} {id} does not belong to the customer {customer}."
    ))
    .param(kind)
}

/// Reads parameters Stripe accepts and the simulator does not model, so `finish` lets them pass.
fn ignore(p: &mut Params, keys: &[&str]) {
    for k in keys {
        let _ = p.raw(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(method: &str, path: &str) -> Option<(&'static str, Option<String>)> {
        route(method, path).map(|(r, id)| (r.pattern, id))
    }

    #[test]
    fn every_pattern_routes_to_itself() {
        for r in RESOURCES.iter().flat_map(|t| t.iter()) {
            let (method, path) = r.pattern.split_once(' ').unwrap();
            let has_id = path.contains("{id}");
            let path = path.replace("{id}", "x_1");
            let want = (r.pattern, has_id.then(|| "x_1".to_string()));
            assert_eq!(pattern(method, &path), Some(want.clone()), "{}", r.pattern);
            assert_eq!(
                pattern(method, &format!("{path}/")),
                Some(want),
                "{}",
                r.pattern
            );
        }
    }

    #[test]
    fn literal_segments_win_and_ids_are_not_empty() {
        let search = pattern("GET", "/v1/invoices/search");
        assert_eq!(search, Some(("GET /v1/invoices/search", None)));
        let preview = pattern("POST", "/v1/invoices/create_preview");
        assert_eq!(preview, Some(("POST /v1/invoices/create_preview", None)));
        assert_eq!(pattern("GET", "/v1/customers//payment_methods"), None);
        assert_eq!(pattern("PUT", "/v1/customers"), None);
        assert_eq!(pattern("GET", "/v1/nothing"), None);
    }
}
