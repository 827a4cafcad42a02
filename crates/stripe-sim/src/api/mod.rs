//! The `/v1` resources, one module each, each listing its routes for the server's axum router. Every
//! handler reads all of its parameters and calls `finish` (which rejects unknown ones) before it
//! changes anything, so a rejected request has no effect. Authentication, idempotency, faults
//! and limits are the server's, around `execute`.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::form::Params;
use crate::listing::{search_result, Query};
use crate::model::{Row, Table};
use crate::store::Store;

mod checkout;
mod customers;
mod events;
mod invoice_actions;
mod invoice_items;
mod invoices;
mod payment_intents;
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
    payment_intents::ROUTES,
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

    /// The method and the path, in axum's syntax (`{id}` is a capture).
    pub fn method_and_path(&self) -> (axum::http::Method, &'static str) {
        let (m, p) = self
            .pattern
            .split_once(' ')
            .expect("a pattern is `METHOD /path`");
        let method = axum::http::Method::from_bytes(m.as_bytes()).expect("a plain HTTP method");
        (method, p)
    }

    /// The `{id}` segment of a path this route matched, as sent (Stripe's ids need no decoding).
    pub fn capture(&self, path: &str) -> Option<String> {
        let (_, pattern) = self.method_and_path();
        let at = pattern.split('/').position(|s| s == "{id}")?;
        path.split('/').nth(at).map(str::to_string)
    }
}

/// Every `/v1` route. axum's router prefers a literal segment to `{id}`
/// (`/v1/customers/search` is not a customer), so the tables need no particular order.
pub fn routes() -> impl Iterator<Item = &'static Route> {
    RESOURCES.iter().flat_map(|table| table.iter())
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
