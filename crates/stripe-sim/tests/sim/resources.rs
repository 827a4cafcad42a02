use serde_json::Value;

use crate::common::{id, Sim};

#[tokio::test]
async fn customers_crud_list_and_search() {
    let sim = Sim::start().await;
    let c = sim
        .post(
            "/v1/customers",
            &[
                ("email", "a@example.com"),
                ("name", "Acme"),
                ("metadata[tenant_id]", "t-1"),
            ],
        )
        .await
        .ok();
    let cid = id(&c);
    assert!(cid.starts_with("cus_"));
    assert_eq!(c["object"], "customer");
    assert_eq!(c["metadata"]["tenant_id"], "t-1");

    let got = sim.get(&format!("/v1/customers/{cid}")).await.ok();
    assert_eq!(got["email"], "a@example.com");

    let upd = sim
        .post(
            &format!("/v1/customers/{cid}"),
            &[
                ("name", "Acme Inc"),
                ("metadata[plan]", "pro"),
                ("metadata[tenant_id]", ""),
            ],
        )
        .await
        .ok();
    assert_eq!(upd["name"], "Acme Inc");
    assert_eq!(upd["metadata"]["plan"], "pro");
    assert!(
        upd["metadata"].get("tenant_id").is_none(),
        "empty value unsets a key"
    );

    sim.customer("b@example.com").await;
    let by_email = sim.get("/v1/customers?email=b%40example.com").await.ok();
    assert_eq!(by_email["data"].as_array().map(Vec::len), Some(1));

    sim.post(
        &format!("/v1/customers/{cid}"),
        &[("metadata[tenant_id]", "t-9")],
    )
    .await
    .ok();
    let found = sim
        .get("/v1/customers/search?query=metadata%5B%27tenant_id%27%5D%3A%27t-9%27")
        .await
        .ok();
    assert_eq!(found["object"], "search_result");
    assert_eq!(found["data"][0]["id"], cid.as_str());

    let del = sim.delete(&format!("/v1/customers/{cid}")).await.ok();
    assert_eq!(del["deleted"], true);
    let gone = sim.get(&format!("/v1/customers/{cid}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.err()["code"], "resource_missing");
    assert_eq!(gone.err()["type"], "invalid_request_error");
}

#[tokio::test]
async fn pagination_walks_newest_first() {
    let sim = Sim::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(sim.customer(&format!("p{i}@example.com")).await);
    }
    ids.reverse();
    let page1 = sim.get("/v1/customers?limit=3").await.ok();
    assert_eq!(page1["object"], "list");
    assert_eq!(page1["url"], "/v1/customers");
    assert_eq!(page1["has_more"], true);
    let got: Vec<String> = page1["data"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(got, ids[0..3]);
    let page2 = sim
        .get(&format!("/v1/customers?limit=3&starting_after={}", ids[2]))
        .await
        .ok();
    let got: Vec<String> = page2["data"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(got, ids[3..6]);
    let page3 = sim
        .get(&format!("/v1/customers?limit=3&starting_after={}", ids[5]))
        .await
        .ok();
    assert_eq!(page3["has_more"], false);
    assert_eq!(page3["data"].as_array().map(Vec::len), Some(1));
    let back = sim
        .get(&format!("/v1/customers?limit=2&ending_before={}", ids[3]))
        .await
        .ok();
    let got: Vec<String> = back["data"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(got, ids[1..3]);
    let bad = sim.get("/v1/customers?limit=500").await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn products_and_prices_with_lookup_keys() {
    let sim = Sim::start().await;
    let prod = sim
        .post(
            "/v1/products",
            &[("name", "Pro"), ("metadata[app]", "thanotopolis")],
        )
        .await
        .ok();
    let pid = id(&prod);
    let price = sim
        .post(
            "/v1/prices",
            &[
                ("product", pid.as_str()),
                ("unit_amount", "29900"),
                ("currency", "usd"),
                ("recurring[interval]", "month"),
                ("lookup_key", "pro_monthly"),
            ],
        )
        .await
        .ok();
    assert_eq!(price["type"], "recurring");
    assert_eq!(price["recurring"]["interval"], "month");
    assert_eq!(price["unit_amount_decimal"], "29900");

    let dup = sim
        .post(
            "/v1/prices",
            &[
                ("product", pid.as_str()),
                ("unit_amount", "100"),
                ("currency", "usd"),
                ("lookup_key", "pro_monthly"),
            ],
        )
        .await;
    assert_eq!(dup.status, 400);

    let moved = sim
        .post(
            "/v1/prices",
            &[
                ("product", pid.as_str()),
                ("unit_amount", "31900"),
                ("currency", "usd"),
                ("recurring[interval]", "month"),
                ("lookup_key", "pro_monthly"),
                ("transfer_lookup_key", "true"),
            ],
        )
        .await
        .ok();
    let listed = sim.get("/v1/prices?lookup_keys[]=pro_monthly").await.ok();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["data"][0]["id"], moved["id"]);
    let old = sim.get(&format!("/v1/prices/{}", id(&price))).await.ok();
    assert_eq!(old["lookup_key"], Value::Null);

    let expanded = sim
        .get(&format!("/v1/prices/{}?expand[]=product", id(&moved)))
        .await
        .ok();
    assert_eq!(expanded["product"]["name"], "Pro");

    let upd = sim
        .post(
            &format!("/v1/products/{pid}"),
            &[
                ("description", "Everything"),
                ("default_price", &id(&moved)),
            ],
        )
        .await
        .ok();
    assert_eq!(upd["default_price"], moved["id"]);
    let found = sim
        .get("/v1/products/search?query=metadata%5B%27app%27%5D%3A%27thanotopolis%27")
        .await
        .ok();
    assert_eq!(found["data"][0]["id"], pid.as_str());
    let products = sim.get("/v1/products?active=true").await.ok();
    assert_eq!(products["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn subscriptions_trial_cancel_at_period_end_and_cancel() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let cus = sim
        .post(
            "/v1/customers",
            &[
                ("email", "s@example.com"),
                ("payment_method", "pm_card_visa"),
                ("invoice_settings[default_payment_method]", "pm_card_visa"),
            ],
        )
        .await
        .ok();
    let cid = id(&cus);
    let sub = sim
        .post(
            "/v1/subscriptions",
            &[
                ("customer", cid.as_str()),
                ("items[0][price]", price.as_str()),
                ("trial_period_days", "14"),
                ("metadata[tenant_id]", "t-1"),
                ("expand[0]", "latest_invoice"),
            ],
        )
        .await
        .ok();
    let sid = id(&sub);
    assert_eq!(sub["status"], "trialing");
    assert_eq!(sub["latest_invoice"]["amount_due"], 0);
    assert_eq!(sub["latest_invoice"]["status"], "paid");
    let item = &sub["items"]["data"][0];
    assert_eq!(item["current_period_end"], sub["trial_end"]);
    assert!(
        sub.get("current_period_end").is_none(),
        "periods live on items"
    );

    let upd = sim
        .post(
            &format!("/v1/subscriptions/{sid}"),
            &[("cancel_at_period_end", "true")],
        )
        .await
        .ok();
    assert_eq!(upd["cancel_at_period_end"], true);
    assert_eq!(upd["cancel_at"], item["current_period_end"]);

    let listed = sim
        .get(&format!(
            "/v1/subscriptions?customer={cid}&status=trialing&expand[]=data.customer"
        ))
        .await
        .ok();
    assert_eq!(listed["data"][0]["customer"]["email"], "s@example.com");

    let canceled = sim.delete(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(canceled["status"], "canceled");
    assert!(canceled["ended_at"].is_i64());
    let none = sim
        .get(&format!("/v1/subscriptions?customer={cid}"))
        .await
        .ok();
    assert_eq!(none["data"].as_array().map(Vec::len), Some(0));
    let all = sim
        .get(&format!("/v1/subscriptions?customer={cid}&status=all"))
        .await
        .ok();
    assert_eq!(all["data"].as_array().map(Vec::len), Some(1));

    let events = sim.event_types().await;
    assert!(events.contains(&"customer.subscription.deleted".to_string()));
    let updated = sim
        .get("/v1/events?type=customer.subscription.updated")
        .await
        .ok();
    let prev = &updated["data"][0]["data"]["previous_attributes"];
    assert_eq!(prev["cancel_at_period_end"], false, "{prev}");
}

#[tokio::test]
async fn subscription_without_card_is_refused_and_with_card_active() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(1000).await;
    let cid = sim.customer("n@example.com").await;
    // No card at all: Stripe refuses the create (400 resource_missing) and writes nothing.
    let refused = sim
        .post(
            "/v1/subscriptions",
            &[
                ("customer", cid.as_str()),
                ("items[0][price]", price.as_str()),
            ],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.err()["code"], "resource_missing");
    assert!(refused.err()["message"]
        .as_str()
        .unwrap()
        .starts_with("This customer has no attached payment source or default payment method."));
    let all = sim.get("/v1/subscriptions?status=all").await.ok();
    assert_eq!(all["data"].as_array().map(Vec::len), Some(0));
    let invs = sim.get("/v1/invoices").await.ok();
    assert_eq!(invs["data"].as_array().map(Vec::len), Some(0));
    // `default_incomplete` creates it incomplete, its first invoice open and not attempted.
    let sub = sim
        .post(
            "/v1/subscriptions",
            &[
                ("customer", cid.as_str()),
                ("items[0][price]", price.as_str()),
                ("payment_behavior", "default_incomplete"),
            ],
        )
        .await
        .ok();
    assert_eq!(sub["status"], "incomplete");
    let first = sim
        .get(&format!(
            "/v1/invoices/{}",
            sub["latest_invoice"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(first["status"], "open");
    assert_eq!(first["attempt_count"], 0);
    // A declined card: incomplete with the default `allow_incomplete`, nothing written with
    // `error_if_incomplete` (402).
    let declined = sim
        .post(
            "/v1/subscriptions",
            &[
                ("customer", cid.as_str()),
                ("items[0][price]", price.as_str()),
                ("default_payment_method", "pm_card_chargeCustomerFail"),
            ],
        )
        .await
        .ok();
    assert_eq!(declined["status"], "incomplete");
    let strict = sim
        .post(
            "/v1/subscriptions",
            &[
                ("customer", cid.as_str()),
                ("items[0][price]", price.as_str()),
                ("default_payment_method", "pm_card_chargeCustomerFail"),
                ("payment_behavior", "error_if_incomplete"),
            ],
        )
        .await;
    assert_eq!(strict.status, 402);
    assert_eq!(strict.err()["code"], "card_declined");
    let all = sim.get("/v1/subscriptions?status=all").await.ok();
    assert_eq!(all["data"].as_array().map(Vec::len), Some(2));
    let sub2 = sim
        .post(
            "/v1/subscriptions",
            &[
                ("customer", cid.as_str()),
                ("items[0][price]", price.as_str()),
                ("default_payment_method", "pm_card_visa"),
            ],
        )
        .await
        .ok();
    assert_eq!(sub2["status"], "active");
    let inv = sim
        .get(&format!(
            "/v1/invoices/{}",
            sub2["latest_invoice"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(inv["status"], "paid");
    assert_eq!(inv["amount_paid"], 1000);
    assert_eq!(inv["billing_reason"], "subscription_create");
    assert_eq!(
        inv["lines"]["data"][0]["parent"]["type"],
        "subscription_item_details"
    );
}

#[tokio::test]
async fn invoice_items_crud() {
    let sim = Sim::start().await;
    let cid = sim.customer("ii@example.com").await;
    let a = sim
        .post(
            "/v1/invoiceitems",
            &[
                ("customer", cid.as_str()),
                ("amount", "1234"),
                ("currency", "usd"),
                ("description", "Phone Calls: 12 calls"),
                ("metadata[k]", "v"),
            ],
        )
        .await
        .ok();
    assert_eq!(a["amount"], 1234);
    assert_eq!(a["invoice"], Value::Null);
    let b = sim
        .post(
            "/v1/invoiceitems",
            &[
                ("customer", cid.as_str()),
                ("unit_amount_decimal", "2.5"),
                ("quantity", "3"),
                ("currency", "usd"),
            ],
        )
        .await
        .ok();
    assert_eq!(b["amount"], 8);
    let both = sim
        .get(&format!("/v1/invoiceitems?customer={cid}"))
        .await
        .ok();
    assert_eq!(both["data"].as_array().map(Vec::len), Some(2));
    let del = sim
        .delete(&format!("/v1/invoiceitems/{}", id(&b)))
        .await
        .ok();
    assert_eq!(del["deleted"], true);
    let one = sim
        .get(&format!("/v1/invoiceitems?customer={cid}&pending=true"))
        .await
        .ok();
    assert_eq!(one["data"].as_array().map(Vec::len), Some(1));
    let missing = sim
        .post(
            "/v1/invoiceitems",
            &[("customer", cid.as_str()), ("amount", "1")],
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.err()["code"], "parameter_missing");
    assert_eq!(missing.err()["param"], "currency");
}

#[tokio::test]
async fn portal_configurations_sessions_webhook_endpoints_and_events() {
    let sim = Sim::start().await;
    let cfg = sim
        .post(
            "/v1/billing_portal/configurations",
            &[
                ("business_profile[headline]", "Thanotopolis"),
                ("features[subscription_cancel][enabled]", "true"),
                ("features[subscription_cancel][mode]", "at_period_end"),
                ("features[payment_method_update][enabled]", "true"),
                ("features[invoice_history][enabled]", "true"),
            ],
        )
        .await
        .ok();
    let cfg_id = id(&cfg);
    assert_eq!(
        cfg["features"]["subscription_cancel"]["mode"],
        "at_period_end"
    );
    let upd = sim
        .post(
            &format!("/v1/billing_portal/configurations/{cfg_id}"),
            &[("default_return_url", "https://app.example/billing")],
        )
        .await
        .ok();
    assert_eq!(upd["default_return_url"], "https://app.example/billing");
    let list = sim.get("/v1/billing_portal/configurations").await.ok();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    let cid = sim.customer("portal@example.com").await;
    let ps = sim
        .post(
            "/v1/billing_portal/sessions",
            &[
                ("customer", cid.as_str()),
                ("configuration", cfg_id.as_str()),
            ],
        )
        .await
        .ok();
    assert_eq!(ps["return_url"], "https://app.example/billing");
    assert!(ps["url"].as_str().unwrap().starts_with(&sim.base));

    let we = sim
        .post(
            "/v1/webhook_endpoints",
            &[
                ("url", "http://127.0.0.1:9/hook"),
                ("enabled_events[]", "invoice.paid"),
                ("enabled_events[]", "customer.created"),
            ],
        )
        .await
        .ok();
    assert!(we["secret"].as_str().unwrap().starts_with("whsec_"));
    let listed = sim.get("/v1/webhook_endpoints").await.ok();
    assert!(
        listed["data"][0].get("secret").is_none(),
        "secret only on create"
    );
    let del = sim
        .delete(&format!("/v1/webhook_endpoints/{}", id(&we)))
        .await
        .ok();
    assert_eq!(del["deleted"], true);

    let evs = sim.get("/v1/events?type=customer.created").await.ok();
    assert_eq!(evs["data"].as_array().map(Vec::len), Some(1));
    let ev = &evs["data"][0];
    assert_eq!(ev["data"]["object"]["id"], cid.as_str());
    let one = sim.get(&format!("/v1/events/{}", id(ev))).await.ok();
    assert_eq!(one["type"], "customer.created");
    let wildcard = sim.get("/v1/events?type=customer.*").await.ok();
    assert!(!wildcard["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_creates_are_all_kept() {
    let sim = Sim::start().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = sim.http.clone();
        let url = sim.url("/v1/customers");
        tasks.push(tokio::spawn(async move {
            let email = format!("c{i}@example.com");
            let r = http
                .post(url)
                .bearer_auth("sk_test_x")
                .form(&[("email", email.as_str())])
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            let v: Value = serde_json::from_str(&r.text().await.expect("text")).expect("json");
            v["id"].as_str().expect("id").to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("join"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    let mut seen = 0;
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/customers?limit=100&starting_after={a}"),
            None => "/v1/customers?limit=100".into(),
        };
        let page = sim.get(&path).await.ok();
        let data = page["data"].as_array().unwrap().clone();
        seen += data.len();
        after = data.last().map(id);
        if page["has_more"] != true {
            break;
        }
    }
    assert_eq!(seen, 50);
}
