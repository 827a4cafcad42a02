//! `/api/openapi.json` and `/api/docs`: the document is the committed snapshot (so a change to the API's
//! shape shows up in review), it covers the contract's routes, and every operation in it is served.
//!
//! After an intended change: `UPDATE_OPENAPI=1 cargo test -p thanotopolis-billing --test api openapi`.

use crate::helpers::{spawn_app, Store, TestApp};
use crate::store_tests;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

store_tests!(every_documented_operation_is_served);

/// The contract's JSON routes (API.md's HTTP table, pages left out), as (method, path).
const CONTRACT: &[(&str, &str)] = &[
    ("get", "/api/billing/subscription-plans"),
    ("post", "/api/billing/create-checkout-session"),
    ("get", "/api/billing/customer-portal"),
    ("get", "/api/billing/dashboard"),
    ("post", "/api/billing/cancel-subscription"),
    ("post", "/api/billing/reactivate-subscription"),
    ("post", "/api/billing/set-demo-status/{tenant_id}"),
    ("post", "/api/billing/webhook"),
    ("get", "/api/billing/invoices"),
    ("get", "/api/billing/access"),
    ("post", "/api/usage/events"),
    ("get", "/api/admin/billing/overview"),
    ("post", "/api/admin/billing/runs"),
    ("get", "/api/admin/billing/runs/{run_id}"),
    ("get", "/api/admin/billing/runs"),
    ("post", "/api/admin/tenants"),
    ("get", "/api/admin/tenants"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
];

/// The routes of API.md's "The platform's pages" (beyond the HTTP table), as (method, path).
const PLATFORM_PAGES: &[(&str, &str)] = &[
    ("get", "/api/billing/dashboard"),
    ("get", "/api/admin/organizations/{tenant_id}/billing"),
    ("post", "/api/billing/start-subscription"),
];

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

async fn served(app: &TestApp) -> (String, Value) {
    let reply = app.get("/api/openapi.json", None).await.expect(200);
    assert_eq!(
        reply.headers["content-type"], "application/json",
        "served as JSON"
    );
    (reply.text, reply.body)
}

/// Every `$ref` in the document.
fn refs(v: &Value) -> Vec<String> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => vec![r.clone()],
                _ => refs(v),
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(refs).collect(),
        _ => Vec::new(),
    }
}

/// Every (method, path) the document has operations for.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.insert((method.clone(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn the_served_document_is_the_committed_snapshot() {
    let app = spawn_app(Store::Sqlite).await;
    let (text, doc) = served(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for r in refs(&doc) {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(&r);
        assert!(schemas.contains_key(name), "dangling reference {r}");
    }
    let path = snapshot_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "docs/openapi.json differs from the document the service serves; if the API change is intended, \
         regenerate it with UPDATE_OPENAPI=1 cargo test -p thanotopolis-billing --test api openapi \
         and review the diff"
    );
}

#[tokio::test]
async fn the_contract_routes_are_documented() {
    let app = spawn_app(Store::Sqlite).await;
    let (_, doc) = served(&app).await;
    let ops = operations(&doc);
    for (method, path) in CONTRACT.iter().chain(PLATFORM_PAGES) {
        assert!(
            ops.contains(&(method.to_string(), path.to_string())),
            "{} {path} is in the contract but not in the document",
            method.to_uppercase()
        );
    }
    // The list above is the contract's table, where the contract is at hand (beside the repository).
    let api_md = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/API.md");
    if let Ok(text) = std::fs::read_to_string(api_md) {
        let from_md = contract_routes(&text);
        let listed: BTreeSet<(String, String)> = CONTRACT
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(from_md, listed, "API.md's HTTP table and CONTRACT differ");
    }
}

#[tokio::test]
async fn every_operation_says_who_may_call_it() {
    let app = spawn_app(Store::Sqlite).await;
    let (_, doc) = served(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let description = op["description"].as_str().unwrap_or("");
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let says = if secured {
                description.contains("Roles:")
            } else {
                description.contains("Anyone") || description.contains("Stripe only")
            };
            assert!(
                says,
                "{method} {path}: the description must say who may call it: {description:?}"
            );
            if secured {
                for status in ["401", "403"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
}

/// Routes go through `utoipa_axum::routes!`, which documents them; `OpenApiRouter::route` would serve
/// one without documenting it. The pages (src/web) are HTML and are left out on purpose.
#[test]
fn api_routes_are_registered_only_through_their_annotations() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/http/routes");
    for entry in std::fs::read_dir(&dir).expect("src/http/routes") {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for needle in [".route(", ".nest(", ".fallback("] {
            assert!(
                !source.contains(needle),
                "{} uses {needle}: register the route with .routes(routes!(handler)) and #[utoipa::path]",
                path.display()
            );
        }
    }
}

/// The (method, path) pairs of API.md's HTTP table, without the pages (rows whose "who" is `browser`)
/// and without query strings.
fn contract_routes(api_md: &str) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let table = api_md
        .split("## HTTP")
        .nth(1)
        .expect("API.md has an HTTP section");
    for row in table
        .lines()
        .filter(|l| l.starts_with("| GET") || l.starts_with("| POST"))
    {
        let cells: Vec<&str> = row.split(" | ").collect();
        if cells.get(1).is_some_and(|who| who.trim() == "browser") {
            continue;
        }
        let mut method = "";
        for (i, part) in cells[0].trim_start_matches("| ").split('`').enumerate() {
            if i % 2 == 0 {
                for word in ["GET", "POST"] {
                    if part.contains(word) {
                        method = word;
                    }
                }
            } else {
                let path = part.split('?').next().unwrap_or(part);
                routes.insert((method.to_lowercase(), path.to_owned()));
            }
        }
    }
    routes
}

/// Each operation answers (with no token, or a bogus body) in the error shape or successfully: never
/// axum's bare 404 or 405, which would mean a documented route the router does not serve.
async fn every_documented_operation_is_served(app: TestApp) {
    let (_, doc) = served(&app).await;
    for (method, path) in operations(&doc) {
        let url = app.url(
            &path
                .replace("{tenant_id}", "nobody")
                .replace("{run_id}", "none"),
        );
        let req = match method.as_str() {
            "get" => app.client.get(&url),
            "post" => app.client.post(&url).json(&serde_json::json!({})),
            other => panic!("unexpected method {other}"),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        if status == 404 {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                body["code"].is_string(),
                "{method} {path} is documented but not routed: 404 {text}"
            );
        }
    }
}

#[tokio::test]
async fn the_docs_page_renders_every_operation() {
    let app = spawn_app(Store::Sqlite).await;
    let (_, doc) = served(&app).await;
    let resp = app
        .client
        .get(app.url("/api/docs"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'"),
        "the pages' policy: {csp}"
    );
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script"), "the page runs no script");
    for (method, path) in operations(&doc) {
        let shown = format!("<code>{}</code>", path);
        assert!(html.contains(&shown), "{method} {path} is not on the page");
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            html.contains(&format!("id=\"schema-{name}\"")),
            "schema {name} is not on the page"
        );
    }
}

/// The usage event's documented limits are the ones `usage::validate` enforces.
#[tokio::test]
async fn the_usage_limits_documented_are_the_enforced_ones() {
    use thanotopolis_billing::usage::validate::{MAX_BATCH, MAX_EVENT_ID_CHARS, MAX_QUANTITY};
    let app = spawn_app(Store::Sqlite).await;
    let (_, doc) = served(&app).await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["UsageBatch"]["properties"]["events"]["maxItems"],
        MAX_BATCH
    );
    let event = &schemas["UsageEvent"]["properties"];
    assert_eq!(event["event_id"]["maxLength"], MAX_EVENT_ID_CHARS);
    assert_eq!(event["quantity"]["maximum"], MAX_QUANTITY);
}
