//! Hardening over HTTP: strict CORS and the per-token ingestion limit.

use crate::helpers::{spawn_app, spawn_app_with, Reply, Store, TestApp, JWT_SECRET};
use crate::usage::{ev, stored_events};
use serde_json::json;

const ALLOWED: &str = "https://app.example.com";
const OTHER: &str = "https://evil.example.net";

async fn cors_app() -> TestApp {
    spawn_app_with(Store::Sqlite, |vars| {
        vars.insert(
            "CORS_ALLOWED_ORIGINS".into(),
            format!("{ALLOWED}, http://localhost:3000"),
        );
    })
    .await
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/api/billing/dashboard"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

async fn plain_get(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/billing/subscription-plans"))
        .header("origin", origin)
        .send()
        .await
        .expect("request")
}

fn cors_headers(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_origin_gets_cors_headers() {
    let app = cors_app().await;
    let resp = preflight(&app, ALLOWED).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(header(&resp, "access-control-allow-origin"), ALLOWED);
    let methods = header(&resp, "access-control-allow-methods").to_ascii_uppercase();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let headers = header(&resp, "access-control-allow-headers").to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    // Bearer tokens, not cookies: credentials are never allowed cross-origin.
    assert!(resp
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    assert!(header(&resp, "vary")
        .to_ascii_lowercase()
        .contains("origin"));

    let resp = plain_get(&app, "http://localhost:3000").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        "http://localhost:3000"
    );
    let exposed = header(&resp, "access-control-expose-headers").to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
}

/// The platform's pages send `X-Tenant-ID` with every call (with `Authorization` and `Content-Type`):
/// a browser sends those calls only if the preflight allows the header, and then the call itself works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_tenant_header_passes_the_preflight() {
    let app = cors_app().await;
    for (method, path) in [
        ("GET", "/api/billing/dashboard"),
        ("POST", "/api/billing/start-subscription"),
        ("GET", "/api/admin/organizations/acme/billing"),
    ] {
        let resp = app
            .client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", ALLOWED)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-tenant-id",
            )
            .send()
            .await
            .expect("preflight");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        assert_eq!(header(&resp, "access-control-allow-origin"), ALLOWED);
        let allowed: Vec<String> = header(&resp, "access-control-allow-headers")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        for h in ["authorization", "content-type", "x-tenant-id"] {
            assert!(
                allowed.iter().any(|a| a == h),
                "{path}: {h} not in {allowed:?}"
            );
        }
        assert!(
            header(&resp, "access-control-allow-methods").contains(method),
            "{path}"
        );
    }
    // The call itself, as the page sends it: the header is accepted and changes nothing.
    app.add_tenant("acme").await;
    let resp = app
        .client
        .get(app.url("/api/billing/dashboard"))
        .header("origin", ALLOWED)
        .bearer_auth(crate::helpers::token("acme", "member"))
        .header("x-tenant-id", "acme")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_get_no_cors_headers() {
    let app = cors_app().await;
    for origin in [OTHER, "https://app.example.com.evil.net", "null"] {
        let resp = preflight(&app, origin).await;
        assert_eq!(cors_headers(&resp), Vec::<String>::new(), "{origin}");
        let resp = plain_get(&app, origin).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(cors_headers(&resp), Vec::<String>::new(), "{origin}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configured_origins_there_is_no_cors_at_all() {
    let app = spawn_app(Store::Sqlite).await;
    let resp = preflight(&app, ALLOWED).await;
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
    let resp = plain_get(&app, ALLOWED).await;
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
}

/// A service token for the subject `sub` (each service of the platform has its own).
fn service_token(sub: &str) -> String {
    let claims = thanotopolis_billing::auth::Claims {
        sub: sub.to_owned(),
        tenant_id: "platform".into(),
        role: "service".into(),
        exp: chrono::Utc::now().timestamp() + 3600,
        email: None,
    };
    thanotopolis_billing::auth::jwt::sign(&claims, JWT_SECRET.as_bytes())
}

async fn post(app: &TestApp, token: &str, prefix: &str, n: usize) -> Reply {
    let events: Vec<_> = (0..n)
        .map(|i| ev(&format!("{prefix}-{i}"), "acme", "stt_words", 1))
        .collect();
    app.post(
        "/api/usage/events",
        Some(token),
        &json!({ "events": events }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_is_limited_per_token_in_events() {
    let app = spawn_app_with(Store::Sqlite, |vars| {
        vars.insert("USAGE_EVENTS_PER_SECOND_PER_TOKEN".into(), "100".into());
    })
    .await;
    app.add_tenant("acme").await;
    let (a, b) = (service_token("voice"), service_token("telephony"));

    post(&app, &a, "a1", 60).await.expect(200);
    let started = std::time::Instant::now();
    let refused = post(&app, &a, "a2", 50).await.expect(429);
    assert_eq!(refused.body["code"], "rate_limited");
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("100 usage events per second"), "{detail}");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(
        stored_events(&app).await,
        60,
        "a refused batch stores nothing"
    );

    // Another token has its own budget.
    post(&app, &b, "b1", 100).await.expect(200);

    // After the wait the same batch passes.
    tokio::time::sleep(std::time::Duration::from_secs(retry).saturating_sub(started.elapsed()))
        .await;
    let accepted = post(&app, &a, "a2", 50).await.expect(200);
    assert_eq!(accepted.body["accepted"], 50);
    assert_eq!(stored_events(&app).await, 210);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_limit_by_default() {
    let app = spawn_app(Store::Sqlite).await;
    app.add_tenant("acme").await;
    let t = service_token("voice");
    for round in 0..3 {
        post(&app, &t, &format!("r{round}"), 1000).await.expect(200);
    }
}
