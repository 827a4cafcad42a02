//! Events: list (`type`, `types[]`, `*` wildcards, `created`) and retrieve.

use serde_json::Value;

use super::{retrieve, Route};
use crate::error::ApiError;
use crate::form::Params;
use crate::listing::{created_filter, list_page};
use crate::model::EventRec;
use crate::store::Store;

pub(super) const ROUTES: &[Route] = &[
    Route::new("GET /v1/events", |s, _, p| list(s, p)),
    Route::new("GET /v1/events/{id}", |s, id, p| {
        retrieve(s, p, id, "event", "id")
    }),
];

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
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
