use crate::common::{id, Sim, KEY};

#[tokio::test]
async fn auth_is_required_and_any_key_works() {
    let sim = Sim::start().await;
    let none = sim.send(sim.http.get(sim.url("/v1/customers"))).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.err()["type"], "invalid_request_error");
    let basic = sim
        .send(
            sim.http
                .get(sim.url("/v1/customers"))
                .basic_auth("sk_test_anything", Some("")),
        )
        .await;
    assert_eq!(basic.status, 200);
    let versioned = sim
        .send(
            sim.http
                .get(sim.url("/v1/customers"))
                .bearer_auth(KEY)
                .header("Stripe-Version", "2020-08-27"),
        )
        .await;
    assert_eq!(versioned.status, 200);
    assert!(versioned.headers.get("request-id").is_some());
}

#[tokio::test]
async fn unknown_and_missing_parameters_are_rejected() {
    let sim = Sim::start().await;
    let r = sim
        .post("/v1/customers", &[("email", "x@example.com"), ("foo", "1")])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err()["code"], "parameter_unknown");
    assert_eq!(r.err()["message"], "Received unknown parameter: foo");
    assert_eq!(r.err()["param"], "foo");
    // Nothing was created by the rejected request.
    let list = sim.get("/v1/customers").await.ok();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));

    let prod = id(&sim.post("/v1/products", &[("name", "P")]).await.ok());
    let nested = sim
        .post(
            "/v1/prices",
            &[
                ("product", prod.as_str()),
                ("unit_amount", "1"),
                ("currency", "usd"),
                ("recurring[interval]", "month"),
                ("recurring[bogus]", "x"),
            ],
        )
        .await;
    assert_eq!(nested.err()["param"], "recurring[bogus]");
    let missing = sim.post("/v1/products", &[]).await;
    assert_eq!(missing.err()["code"], "parameter_missing");
    assert_eq!(missing.err()["param"], "name");
    let bad_route = sim.get("/v1/nothing_here").await;
    assert_eq!(bad_route.status, 404);
    assert_eq!(bad_route.err()["type"], "invalid_request_error");
    let missing_obj = sim.get("/v1/invoices/in_missing").await;
    assert_eq!(missing_obj.status, 404);
    assert_eq!(
        missing_obj.err()["message"],
        "No such invoice: 'in_missing'"
    );
}

#[tokio::test]
async fn idempotency_replays_and_rejects_mismatch() {
    let sim = Sim::start().await;
    let first = sim
        .post_idem("/v1/customers", "key-1", &[("email", "i@example.com")])
        .await;
    assert_eq!(first.status, 200);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = sim
        .post_idem("/v1/customers", "key-1", &[("email", "i@example.com")])
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.body["id"], first.body["id"]);
    let list = sim.get("/v1/customers").await.ok();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    let other = sim
        .post_idem("/v1/customers", "key-1", &[("email", "other@example.com")])
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(other.err()["type"], "idempotency_error");

    // Parameter errors are not saved (Stripe saves results once execution starts), so the
    // key can be reused with corrected parameters.
    let bad = sim
        .post_idem("/v1/customers", "key-2", &[("bogus", "1")])
        .await;
    assert_eq!(bad.status, 400);
    let retry = sim
        .post_idem("/v1/customers", "key-2", &[("email", "fixed@example.com")])
        .await;
    assert_eq!(retry.status, 200);

    // Errors from execution are saved and replayed.
    let cid = sim.customer("e@example.com").await;
    let inv = id(&sim
        .post("/v1/invoices", &[("customer", cid.as_str())])
        .await
        .ok());
    let pay1 = sim
        .post_idem(&format!("/v1/invoices/{inv}/void"), "key-3", &[])
        .await;
    let pay2 = sim
        .post_idem(&format!("/v1/invoices/{inv}/void"), "key-3", &[])
        .await;
    assert_eq!(pay1.status, 400);
    assert_eq!(pay2.status, 400);
    assert_eq!(
        pay2.headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
}

#[tokio::test]
async fn expand_follows_ids_in_objects_and_lists() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, "4242424242424242").await;
    let sid = id(&sub);
    let full = sim
        .get(&format!(
            "/v1/subscriptions/{sid}?expand[]=latest_invoice&expand[]=customer"
        ))
        .await
        .ok();
    assert_eq!(full["latest_invoice"]["object"], "invoice");
    assert_eq!(full["customer"]["object"], "customer");
    let nested = sim
        .get(&format!(
            "/v1/subscriptions/{sid}?expand[0]=latest_invoice.customer"
        ))
        .await
        .ok();
    assert_eq!(nested["latest_invoice"]["customer"]["object"], "customer");
    let invs = sim
        .get("/v1/invoices?expand[]=data.parent.subscription_details.subscription")
        .await
        .ok();
    assert_eq!(
        invs["data"][0]["parent"]["subscription_details"]["subscription"]["id"],
        sid.as_str()
    );
    let cs = sim
        .get("/v1/checkout/sessions?expand[]=data.subscription")
        .await
        .ok();
    assert_eq!(cs["data"][0]["subscription"]["object"], "subscription");
}

#[tokio::test]
async fn every_route_is_served_under_its_own_name() {
    let sim = Sim::start().await;
    let patterns = stripe_sim::route_patterns();
    for pattern in &patterns {
        let (method, path) = pattern.split_once(' ').expect("METHOD /path");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let path = path.replace("{id}", "x_1");
        sim.send(sim.http.request(method, sim.url(&path)).bearer_auth(KEY))
            .await;
    }
    let stats = sim.ctl_get("/_sim/stats").await;
    for pattern in &patterns {
        assert_eq!(stats["by_route"][pattern], 1, "{pattern}: {stats}");
    }
    assert_eq!(stats["requests_total"], patterns.len());
}

#[tokio::test]
async fn literal_segments_win_and_unknown_urls_are_stripes_404() {
    let sim = Sim::start().await;
    let search = sim.get("/v1/invoices/search?query=status:'open'").await;
    assert_eq!(search.ok()["object"], "search_result");
    // No route: an empty id, another method on a known path, a trailing slash, an unknown path.
    let unknown = [
        sim.get("/v1/customers//payment_methods").await,
        sim.send(sim.http.put(sim.url("/v1/customers")).bearer_auth(KEY))
            .await,
        sim.get("/v1/customers/").await,
        sim.get("/v1/nothing").await,
    ];
    for reply in &unknown {
        assert_eq!(reply.status, 404, "{}", reply.body);
        assert_eq!(reply.err()["type"], "invalid_request_error");
        let message = reply.err()["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("Unrecognized request URL"), "{message}");
    }
    let stats = sim.ctl_get("/_sim/stats").await;
    assert_eq!(stats["by_route"]["GET /v1/invoices/search"], 1);
    assert_eq!(stats["requests_total"], 5, "unknown URLs are counted too");
}
