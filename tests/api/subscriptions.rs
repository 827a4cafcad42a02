//! Checkout to cancellation against the Stripe simulator, with webhooks keeping our copy true.

use crate::helpers::{spawn_app_with, super_admin, token, Store, TestApp};
use crate::store_tests;
use serde_json::json;

const GOOD_CARD: &str = "4242424242424242";
const FAILING_CARD: &str = "4000000000000341";

store_tests!(
    plans_are_public_and_priced,
    checkout_creates_one_customer_and_a_subscription,
    concurrent_checkouts_make_exactly_one_customer,
    checkout_refuses_demo_live_and_bad_input,
    cancel_and_reactivate_at_period_end,
    portal_needs_a_customer,
    invoices_follow_stripe_through_renewals,
    failing_card_after_trial_goes_past_due,
    only_admins_manage_billing,
    a_demo_tenant_is_not_collected_in_stripe,
);

async fn plans_are_public_and_priced(app: TestApp) {
    let reply = app
        .get("/api/billing/subscription-plans", None)
        .await
        .expect(200);
    let plan = &reply.body["plans"][0];
    assert_eq!(plan["amount_cents"], 29_900);
    assert_eq!(plan["currency"], "usd");
    assert_eq!(plan["interval"], "month");
    assert_eq!(plan["name"], "Thanotopolis Platform Subscription");
    assert!(plan["price_id"].as_str().unwrap().starts_with("price_"));
    let features: Vec<&str> = plan["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        features.iter().any(|f| f.contains("$1.00 per 1,000 words")),
        "{features:?}"
    );
}

async fn checkout_creates_one_customer_and_a_subscription(app: TestApp) {
    app.add_tenant("acme").await;
    let session = app
        .post(
            "/api/billing/create-checkout-session",
            Some(&token("acme", "org_admin")),
            &json!({"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no", "trial_days": 14}),
        )
        .await
        .expect(200);
    assert!(session.body["checkout_url"]
        .as_str()
        .unwrap()
        .starts_with(&app.sim));
    let id = session.body["session_id"].as_str().unwrap();
    let s = app
        .sim_get(&format!("/v1/checkout/sessions/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(s["client_reference_id"], "acme");
    assert_eq!(s["mode"], "subscription");
    let customer = app
        .sim_get(&format!(
            "/v1/customers/{}",
            s["customer"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(customer["metadata"]["tenant_id"], "acme");

    app.sim_post(
        &format!("/_sim/checkout/sessions/{id}/complete"),
        &[("card", GOOD_CARD)],
    )
    .await
    .expect(200);
    app.settle().await;
    let sub = app
        .live_subscription("acme")
        .await
        .expect("the webhook recorded the subscription");
    assert_eq!(sub.status, "trialing");
    assert_eq!(sub.amount_cents, 29_900);
    assert!(sub.trial_end.is_some());
    assert!(!sub.cancel_at_period_end);
    let remote = app
        .sim_get(&format!("/v1/subscriptions/{}", sub.stripe_subscription_id))
        .await
        .body;
    assert_eq!(remote["metadata"]["tenant_id"], "acme");
}

async fn concurrent_checkouts_make_exactly_one_customer(app: TestApp) {
    app.add_tenant("acme").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = app.client.clone();
        let url = app.url("/api/billing/create-checkout-session");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token("acme", "admin"))
                .json(&json!({"success_url": format!("https://app.example.com/ok/{i}"), "cancel_url": "https://app.example.com/no"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // Eight tabs, eight different requests: each older session was expired, one stays open.
    let sessions = app.sim_get("/v1/checkout/sessions?limit=100").await.body;
    let open: Vec<&serde_json::Value> = sessions["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["client_reference_id"] == "acme" && s["status"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "{sessions}");
    let customers = app.sim_get("/v1/customers?limit=100").await.body;
    let for_acme = customers["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["metadata"]["tenant_id"] == "acme")
        .count();
    assert_eq!(for_acme, 1, "exactly one Stripe customer per tenant");
}

async fn checkout_refuses_demo_live_and_bad_input(app: TestApp) {
    app.add_tenant("acme").await;
    let admin = token("acme", "org_admin");
    let ok = json!({"success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    for (body, field) in [
        (
            json!({"success_url": "not a url", "cancel_url": "https://a.example"}),
            "success_url",
        ),
        (
            json!({"success_url": "https://a.example", "cancel_url": "ftp://x"}),
            "cancel_url",
        ),
        (
            json!({"success_url": "https://a.example", "cancel_url": "https://a.example", "trial_days": 9999}),
            "trial_days",
        ),
    ] {
        let r = app
            .post("/api/billing/create-checkout-session", Some(&admin), &body)
            .await
            .expect(422);
        assert!(
            r.body["detail"].as_str().unwrap().starts_with(field),
            "{}",
            r.text
        );
    }
    // A demo tenant cannot check out.
    app.post(
        "/api/billing/set-demo-status/acme?is_demo=true",
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);
    let r = app
        .post("/api/billing/create-checkout-session", Some(&admin), &ok)
        .await
        .expect(403);
    assert!(r.body["detail"].as_str().unwrap().contains("demo"));
    let r = app
        .post(
            "/api/billing/set-demo-status/acme?is_demo=false",
            Some(&super_admin()),
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["is_demo"], false);
    app.post(
        "/api/billing/set-demo-status/nobody?is_demo=true",
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(404);
    // With a live subscription, a second checkout conflicts.
    app.subscribe("acme", None, GOOD_CARD).await;
    let r = app
        .post("/api/billing/create-checkout-session", Some(&admin), &ok)
        .await
        .expect(409);
    assert_eq!(r.body["code"], "subscription_exists");
}

async fn cancel_and_reactivate_at_period_end(app: TestApp) {
    app.add_tenant("acme").await;
    let admin = token("acme", "admin");
    app.post("/api/billing/cancel-subscription", Some(&admin), &json!({}))
        .await
        .expect(404);
    app.post(
        "/api/billing/reactivate-subscription",
        Some(&admin),
        &json!({}),
    )
    .await
    .expect(404);
    app.subscribe("acme", None, GOOD_CARD).await;

    let r = app
        .post("/api/billing/cancel-subscription", Some(&admin), &json!({}))
        .await
        .expect(200);
    assert_eq!(r.body["cancel_at_period_end"], true);
    assert_eq!(r.body["status"], "active");
    let period_end = r.body["period_end"].as_str().unwrap().to_owned();
    let sub = app.live_subscription("acme").await.unwrap();
    assert!(sub.cancel_at_period_end);
    let remote = app
        .sim_get(&format!("/v1/subscriptions/{}", sub.stripe_subscription_id))
        .await
        .body;
    assert_eq!(remote["cancel_at_period_end"], true);

    let r = app
        .post(
            "/api/billing/reactivate-subscription",
            Some(&admin),
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["cancel_at_period_end"], false);
    // Cancel again: a distinct write, not a replay of the first cancel.
    let r = app
        .post("/api/billing/cancel-subscription", Some(&admin), &json!({}))
        .await
        .expect(200);
    assert_eq!(r.body["period_end"], period_end.as_str());
    app.settle().await;
    assert!(
        app.live_subscription("acme")
            .await
            .unwrap()
            .cancel_at_period_end
    );

    // At period end Stripe deletes it; the webhook ends our copy.
    app.sim_post("/_sim/clock/advance", &[("to", &period_end)])
        .await
        .expect(200);
    app.sim_post("/_sim/clock/advance", &[("seconds", "60")])
        .await
        .expect(200);
    app.settle().await;
    assert!(app.live_subscription("acme").await.is_none());
    let all = thanotopolis_billing::db::subscriptions::for_tenant(&app.db, "acme")
        .await
        .unwrap();
    assert_eq!(all[0].status, "canceled");
    assert!(all[0].ended_at.is_some());
}

async fn portal_needs_a_customer(app: TestApp) {
    app.add_tenant("acme").await;
    let admin = token("acme", "org_admin");
    let r = app
        .get(
            "/api/billing/customer-portal?return_url=https://a.example/billing",
            Some(&admin),
        )
        .await
        .expect(404);
    assert!(r.body["detail"].as_str().unwrap().contains("checkout"));
    app.subscribe("acme", Some(7), GOOD_CARD).await;
    let r = app
        .get(
            "/api/billing/customer-portal?return_url=https://a.example/billing",
            Some(&admin),
        )
        .await
        .expect(200);
    assert!(r.body["portal_url"].as_str().unwrap().starts_with(&app.sim));
    app.get(
        "/api/billing/customer-portal?return_url=javascript:alert(1)",
        Some(&admin),
    )
    .await
    .expect(422);
}

async fn invoices_follow_stripe_through_renewals(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD_CARD).await;
    let member = token("acme", "member");
    let r = app
        .get("/api/billing/invoices", Some(&member))
        .await
        .expect(200);
    let invoices = r.body["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 1, "{}", r.text);
    assert_eq!(invoices[0]["status"], "paid");
    assert_eq!(invoices[0]["amount_paid_cents"], 29_900);
    assert_eq!(invoices[0]["lines"][0]["amount_cents"], 29_900);
    assert!(invoices[0]["hosted_invoice_url"].as_str().is_some());

    // A month later the subscription renews: a second paid invoice.
    app.advance_clock(32 * 86_400).await;
    app.settle().await;
    let r = app
        .get("/api/billing/invoices?limit=10", Some(&member))
        .await
        .expect(200);
    let invoices = r.body["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 2, "{}", r.text);
    assert!(invoices.iter().all(|i| i["status"] == "paid"));
    app.get("/api/billing/invoices?limit=0", Some(&member))
        .await
        .expect(422);
    // Another tenant sees none of it.
    app.add_tenant("beta").await;
    let r = app
        .get("/api/billing/invoices", Some(&token("beta", "admin")))
        .await
        .expect(200);
    assert_eq!(r.body["invoices"].as_array().unwrap().len(), 0);
    app.get(
        "/api/billing/invoices?tenant_id=acme",
        Some(&token("beta", "admin")),
    )
    .await
    .expect(403);
    let r = app
        .get("/api/billing/invoices?tenant_id=acme", Some(&super_admin()))
        .await
        .expect(200);
    assert_eq!(r.body["invoices"].as_array().unwrap().len(), 2);
}

async fn failing_card_after_trial_goes_past_due(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", Some(3), FAILING_CARD).await;
    assert_eq!(
        app.live_subscription("acme").await.unwrap().status,
        "trialing"
    );
    app.advance_clock(4 * 86_400).await;
    app.settle().await;
    let sub = app.live_subscription("acme").await.unwrap();
    assert_eq!(sub.status, "past_due");
    assert_eq!(
        app.webhook_events_recorded("invoice.payment_failed", 30)
            .await,
        1
    );
    let r = app
        .get("/api/billing/invoices", Some(&token("acme", "user")))
        .await
        .expect(200);
    assert!(
        r.body["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["status"] == "open"),
        "{}",
        r.text
    );
}

async fn only_admins_manage_billing(app: TestApp) {
    app.add_tenant("acme").await;
    let body = json!({"success_url": "https://a.example/ok", "cancel_url": "https://a.example/no"});
    for role in ["member", "user", "service"] {
        let t = token("acme", role);
        assert_eq!(
            app.post("/api/billing/create-checkout-session", Some(&t), &body)
                .await
                .status,
            403,
            "{role}"
        );
        assert_eq!(
            app.post("/api/billing/cancel-subscription", Some(&t), &json!({}))
                .await
                .status,
            403,
            "{role}"
        );
        assert_eq!(
            app.get("/api/billing/customer-portal", Some(&t))
                .await
                .status,
            403,
            "{role}"
        );
        assert_eq!(
            app.post(
                "/api/billing/set-demo-status/acme?is_demo=true",
                Some(&t),
                &json!({})
            )
            .await
            .status,
            403
        );
    }
    assert_eq!(
        app.get("/api/billing/invoices", Some(&token("acme", "service")))
            .await
            .status,
        403
    );
    app.post("/api/billing/create-checkout-session", None, &body)
        .await
        .expect(401);
    // A super admin acts on a tenant with ?tenant_id=.
    app.post(
        "/api/billing/create-checkout-session?tenant_id=acme",
        Some(&super_admin()),
        &body,
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn sqlite_app_starts_with_the_simulator() {
    // Guards the harness itself: a wrong STRIPE_API_BASE would fail every test above in confusing ways.
    let app = spawn_app_with(Store::Sqlite, |_| {}).await;
    app.sim_get("/_sim/clock").await.expect(200);
}

store_tests!(dashboard_shows_the_subscription);

async fn dashboard_shows_the_subscription(app: TestApp) {
    app.add_tenant("acme").await;
    app.add_tenant("trial").await;
    app.subscribe("acme", None, GOOD_CARD).await;
    app.subscribe("trial", Some(14), GOOD_CARD).await;
    for (tenant, status) in [("acme", "active"), ("trial", "trialing")] {
        let d = app
            .get("/api/billing/dashboard", Some(&token(tenant, "member")))
            .await
            .expect(200)
            .body;
        let sub = &d["current_subscription"];
        assert_eq!(sub["status"], status, "{d}");
        assert_eq!(sub["amount_cents"], 29_900);
        assert_eq!(sub["cancel_at_period_end"], false);
        assert!(sub["current_period_end"].as_str().is_some());
        assert_eq!(d["is_demo"], false);
        // The card given at checkout, as the customer recognizes it.
        assert_eq!(
            d["payment_method"],
            json!({"type": "card", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034}),
            "{d}"
        );
    }
    let d = app
        .get("/api/billing/dashboard", Some(&token("acme", "member")))
        .await
        .body;
    assert_eq!(d["recent_invoices"][0]["amount_paid_cents"], 29_900);

    // A new card in the portal shows once Stripe tells us.
    let customer = thanotopolis_billing::db::customers::customer_of(&app.db, "acme")
        .await
        .unwrap()
        .unwrap();
    app.sim_post(
        &format!("/_sim/customers/{customer}/card"),
        &[("card", "5555555555554444")],
    )
    .await
    .expect(200);
    app.settle().await;
    let d = app
        .get("/api/billing/dashboard", Some(&token("acme", "member")))
        .await
        .body;
    assert_eq!(d["payment_method"]["brand"], "mastercard", "{d}");
    assert_eq!(d["payment_method"]["last4"], "4444");
    // No subscription, no card.
    app.add_tenant("none").await;
    let d = app
        .get("/api/billing/dashboard", Some(&token("none", "member")))
        .await
        .body;
    assert!(d["payment_method"].is_null(), "{d}");
}

/// Demo means no charges in Stripe too: the subscription's renewals are voided while the tenant is a
/// demo account, and collected again once it is not.
async fn a_demo_tenant_is_not_collected_in_stripe(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, GOOD_CARD).await;
    let sub_id = app
        .live_subscription("acme")
        .await
        .unwrap()
        .stripe_subscription_id;
    let r = app
        .post(
            "/api/billing/set-demo-status/acme?is_demo=true",
            Some(&super_admin()),
            &json!({}),
        )
        .await
        .expect(200);
    let message = r.body["message"].as_str().unwrap();
    // The admin page says the same, naming the organization and its subscription.
    let admin = crate::pages::sign_in(&app, &super_admin()).await;
    let page = crate::pages::get(&app, "/admin/billing?done=demo_on&tenant=acme", &admin).await;
    assert!(
        page.text
            .contains("Stripe no longer collects its subscription"),
        "{}",
        page.text
    );
    assert!(
        message.contains("Org acme") && message.contains("voided"),
        "{message}"
    );
    let sub = app
        .sim_get(&format!("/v1/subscriptions/{sub_id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(sub["pause_collection"]["behavior"], "void", "{sub}");

    let renewals = |invoices: &serde_json::Value| -> Vec<(String, i64)> {
        invoices["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["billing_reason"] == "subscription_cycle")
            .map(|i| {
                (
                    i["status"].as_str().unwrap().to_owned(),
                    i["amount_paid"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    app.advance_clock(32 * 86_400).await;
    app.settle().await;
    let invoices = app.sim_get("/v1/invoices?limit=100").await.expect(200).body;
    assert_eq!(
        renewals(&invoices),
        vec![("void".to_owned(), 0)],
        "{invoices}"
    );

    let r = app
        .post(
            "/api/billing/set-demo-status/acme?is_demo=false",
            Some(&super_admin()),
            &json!({}),
        )
        .await
        .expect(200);
    assert!(
        r.body["message"].as_str().unwrap().contains("collects"),
        "{}",
        r.text
    );
    let sub = app
        .sim_get(&format!("/v1/subscriptions/{sub_id}"))
        .await
        .expect(200)
        .body;
    assert!(sub["pause_collection"].is_null(), "{sub}");
    app.advance_clock(31 * 86_400).await;
    app.settle().await;
    let invoices = app.sim_get("/v1/invoices?limit=100").await.expect(200).body;
    let mut got = renewals(&invoices);
    got.sort();
    assert_eq!(
        got,
        vec![("paid".to_owned(), 29_900), ("void".to_owned(), 0)],
        "{invoices}"
    );
    // Switching demo on twice changes nothing the second time.
    for _ in 0..2 {
        app.post(
            "/api/billing/set-demo-status/acme?is_demo=true",
            Some(&super_admin()),
            &json!({}),
        )
        .await
        .expect(200);
    }
    let sub = app
        .sim_get(&format!("/v1/subscriptions/{sub_id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(sub["pause_collection"]["behavior"], "void");
}
