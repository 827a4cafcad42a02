use std::time::Instant;

use crate::common::{id, Sim};

#[tokio::test]
async fn faults_before_fail_without_applying() {
    let sim = Sim::start().await;
    sim.ctl(
        "/_sim/faults",
        &[("path", "/v1/customers"), ("status", "500"), ("count", "2")],
    )
    .await;
    for _ in 0..2 {
        let r = sim
            .post("/v1/customers", &[("email", "f@example.com")])
            .await;
        assert_eq!(r.status, 500);
        assert_eq!(r.err()["type"], "api_error");
        assert_eq!(
            r.headers
                .get("stripe-should-retry")
                .and_then(|v| v.to_str().ok()),
            Some("true")
        );
    }
    sim.post("/v1/customers", &[("email", "f@example.com")])
        .await
        .ok();
    let list = sim.get("/v1/customers").await.ok();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    sim.ctl(
        "/_sim/faults",
        &[("path", "/v1/invoices"), ("status", "429")],
    )
    .await;
    let r = sim.get("/v1/invoices").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.err()["code"], "rate_limit");
    // Faults match by prefix only.
    sim.get("/v1/customers").await.ok();
}

#[tokio::test]
async fn faults_after_apply_then_lose_the_reply() {
    let sim = Sim::start().await;
    sim.ctl(
        "/_sim/faults",
        &[
            ("path", "/v1/customers"),
            ("status", "502"),
            ("when", "after"),
        ],
    )
    .await;
    let r = sim
        .post_idem("/v1/customers", "lost-1", &[("email", "lost@example.com")])
        .await;
    assert_eq!(r.status, 502);
    let list = sim.get("/v1/customers").await.ok();
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(1),
        "the create happened"
    );
    // The client's retry with the same key gets the original result, no second customer.
    let retry = sim
        .post_idem("/v1/customers", "lost-1", &[("email", "lost@example.com")])
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body["id"], list["data"][0]["id"]);
    assert_eq!(
        retry
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
}

#[tokio::test]
async fn delay_faults_and_latency_slow_requests() {
    let sim = Sim::start().await;
    sim.ctl(
        "/_sim/faults",
        &[("path", "/v1/products"), ("delay_ms", "300")],
    )
    .await;
    let t = Instant::now();
    sim.get("/v1/products").await.ok();
    assert!(t.elapsed().as_millis() >= 300);
    sim.ctl("/_sim/latency", &[("ms", "150")]).await;
    let t = Instant::now();
    sim.get("/v1/products").await.ok();
    assert!(t.elapsed().as_millis() >= 150);
    sim.ctl("/_sim/latency", &[("ms", "0")]).await;
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let sim = Sim::start().await;
    sim.ctl("/_sim/rate_limit", &[("per_second", "5")]).await;
    let mut limited = 0;
    let mut ok = 0;
    for _ in 0..20 {
        let r = sim.get("/v1/customers").await;
        match r.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(r.err()["code"], "rate_limit");
                assert!(r.err()["message"].as_str().unwrap().contains("rate limit"));
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(limited > 0, "some requests were limited");
    assert!(ok >= 5);
    sim.ctl("/_sim/rate_limit", &[("per_second", "0")]).await;
    for _ in 0..20 {
        sim.get("/v1/customers").await.ok();
    }
}

#[tokio::test]
async fn stats_count_routes_and_reset_clears_everything() {
    let sim = Sim::start().await;
    let cid = sim.customer("st@example.com").await;
    sim.get(&format!("/v1/customers/{cid}")).await.ok();
    sim.get(&format!("/v1/customers/{cid}")).await.ok();
    sim.post("/v1/invoices", &[("customer", cid.as_str())])
        .await
        .ok();
    let stats = sim.ctl_get("/_sim/stats").await;
    assert_eq!(stats["requests_total"], 4);
    assert_eq!(stats["by_route"]["GET /v1/customers/{id}"], 2);
    assert_eq!(stats["by_route"]["POST /v1/invoices"], 1);
    assert_eq!(stats["by_route"]["POST /v1/customers"], 1);

    // JSON bodies work for control routes too.
    let r = sim
        .send(
            sim.http
                .post(sim.url("/_sim/faults"))
                .json(&serde_json::json!({"path": "/v1/x", "status": 500, "count": 3})),
        )
        .await
        .ok();
    assert_eq!(r["count"], 3);
    sim.ctl("/_sim/reset", &[]).await;
    let stats = sim.ctl_get("/_sim/stats").await;
    assert_eq!(stats["requests_total"], 0);
    let gone = sim.get(&format!("/v1/customers/{cid}")).await;
    assert_eq!(gone.status, 404);
    let faults = sim.ctl_get("/_sim/faults").await;
    assert_eq!(faults["faults"].as_array().map(Vec::len), Some(0));
    let fresh = sim.customer("after-reset@example.com").await;
    assert_ne!(fresh, cid);
    let _ = id(&sim.get(&format!("/v1/customers/{fresh}")).await.ok());
}
