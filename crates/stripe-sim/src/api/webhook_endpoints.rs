//! Webhook endpoints: create (`secret` shown on create only, `api_version` fixed then),
//! retrieve, update, delete, list. Delivery is in `webhooks`.

use serde_json::Value;

use super::{deleted, ignore, retrieve, Route};
use crate::enums;
use crate::error::ApiError;
use crate::form::{apply_metadata, new_metadata, Params};
use crate::ids::new_id;
use crate::listing::list_page;
use crate::model::WebhookEndpoint;
use crate::store::{Store, API_VERSION};

pub(super) const ROUTES: &[Route] = &[
    Route::new("POST /v1/webhook_endpoints", |s, _, p| create(s, p)),
    Route::new("GET /v1/webhook_endpoints", |s, _, p| list(s, p)),
    Route::new("GET /v1/webhook_endpoints/{id}", |s, id, p| {
        retrieve(s, p, id, "webhook_endpoint", "webhook_endpoint")
    }),
    Route::new("POST /v1/webhook_endpoints/{id}", update),
    Route::new("DELETE /v1/webhook_endpoints/{id}", delete),
];

fn create(s: &mut Store, mut p: Params) -> Result<Value, ApiError> {
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

fn update(s: &mut Store, id: &str, mut p: Params) -> Result<Value, ApiError> {
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

fn delete(s: &mut Store, id: &str, p: Params) -> Result<Value, ApiError> {
    p.finish()?;
    s.webhook_endpoints
        .remove(id)
        .ok_or_else(|| ApiError::no_such("webhook_endpoint", id, "webhook_endpoint"))?;
    Ok(deleted(id, "webhook_endpoint"))
}

fn list(s: &Store, mut p: Params) -> Result<Value, ApiError> {
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
