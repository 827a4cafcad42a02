use serde_json::Value;

use crate::common::{id, Sim};

const OK: &str = "4242424242424242";
const FAILS: &str = "4000000000000341";

#[tokio::test]
async fn checkout_without_trial_pays_first_invoice() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let cs = sim.checkout(&price, 0, None).await;
    let cs_id = id(&cs);
    assert_eq!(cs["status"], "open");
    assert_eq!(cs["amount_total"], 29900);
    assert_eq!(cs["url"], format!("{}/checkout/{cs_id}", sim.base).as_str());
    let before = sim.event_types().await.len();
    let done = sim
        .ctl(&format!("/_sim/checkout/sessions/{cs_id}/complete"), &[])
        .await;
    assert_eq!(done["status"], "complete");
    assert_eq!(done["payment_status"], "paid");
    assert_eq!(done["client_reference_id"], "tenant-1");
    let sub = sim
        .get(&format!(
            "/v1/subscriptions/{}?expand[]=latest_invoice",
            done["subscription"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["metadata"]["tenant_id"], "tenant-1");
    assert_eq!(sub["customer"], done["customer"]);
    let inv = &sub["latest_invoice"];
    assert_eq!(inv["status"], "paid");
    assert_eq!(inv["amount_paid"], 29900);
    assert_eq!(inv["amount_remaining"], 0);
    assert!(inv["hosted_invoice_url"]
        .as_str()
        .unwrap()
        .starts_with(&sim.base));
    assert!(inv["number"].is_string());

    let events = sim.event_types().await;
    assert_eq!(
        events[before..],
        [
            "customer.created",
            "payment_method.attached",
            "customer.subscription.created",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
            "checkout.session.completed",
        ]
    );
    let again = sim
        .send(
            sim.http
                .post(sim.url(&format!("/_sim/checkout/sessions/{cs_id}/complete"))),
        )
        .await;
    assert_eq!(again.status, 400);
}

#[tokio::test]
async fn declined_card_without_trial_leaves_session_open() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let cs_id = id(&sim.checkout(&price, 0, None).await);
    let r = sim
        .send(
            sim.http
                .post(sim.url(&format!("/_sim/checkout/sessions/{cs_id}/complete")))
                .form(&[("card", FAILS)]),
        )
        .await;
    assert_eq!(r.status, 402);
    assert_eq!(r.err()["type"], "card_error");
    assert_eq!(r.err()["code"], "card_declined");
    let cs = sim
        .get(&format!("/v1/checkout/sessions/{cs_id}"))
        .await
        .ok();
    assert_eq!(cs["status"], "open");
    assert_eq!(cs["subscription"], Value::Null);
    let subs = sim.get("/v1/subscriptions?status=all").await.ok();
    assert_eq!(subs["data"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn declined_card_with_trial_fails_at_trial_end() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 14, FAILS).await;
    assert_eq!(sub["status"], "trialing");
    let sid = id(&sub);
    sim.advance_days(15).await;
    let sub = sim
        .get(&format!("/v1/subscriptions/{sid}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(sub["status"], "past_due");
    let inv = &sub["latest_invoice"];
    assert_eq!(inv["status"], "open");
    assert_eq!(inv["attempt_count"], 1);
    assert_eq!(inv["amount_due"], 29900);
    assert_eq!(inv["billing_reason"], "subscription_cycle");
    let failed = sim.get("/v1/events?type=invoice.payment_failed").await.ok();
    assert_eq!(failed["data"].as_array().map(Vec::len), Some(1));
    let cus = sim
        .get(&format!(
            "/v1/customers/{}",
            sub["customer"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(cus["delinquent"], true);
}

#[tokio::test]
async fn hosted_checkout_page_pays_and_redirects() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let cs_id = id(&sim.checkout(&price, 14, None).await);
    let page = sim
        .http
        .get(sim.url(&format!("/checkout/{cs_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for needle in [
        "$299.00",
        "per month",
        "Thanotopolis Pro",
        "id=\"cardNumber\"",
        "id=\"submit\"",
        "id=\"trial-notice\"",
        "14 days free",
        "https://app.example/cancel",
    ] {
        assert!(html.contains(needle), "page lacks {needle}");
    }
    let bad = sim
        .http
        .post(sim.url(&format!("/checkout/{cs_id}/pay")))
        .form(&[("cardNumber", "1234")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 402);
    assert!(bad.text().await.unwrap().contains("id=\"error\""));
    let paid = sim
        .http
        .post(sim.url(&format!("/checkout/{cs_id}/pay")))
        .form(&[
            ("cardNumber", "4242 4242 4242 4242"),
            ("email", "buyer@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
    let loc = paid.headers().get("location").unwrap().to_str().unwrap();
    assert_eq!(loc, format!("https://app.example/ok?session={cs_id}"));
    let cs = sim
        .get(&format!("/v1/checkout/sessions/{cs_id}?expand[]=customer"))
        .await
        .ok();
    assert_eq!(cs["status"], "complete");
    assert_eq!(cs["payment_status"], "no_payment_required");
    assert_eq!(cs["customer"]["email"], "buyer@example.com");
    let items = sim
        .get(&format!("/v1/checkout/sessions/{cs_id}/line_items"))
        .await
        .ok();
    assert_eq!(items["data"][0]["amount_total"], 29900);
}

#[tokio::test]
async fn portal_page_cancels_reactivates_and_updates_card() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, OK).await;
    let sid = id(&sub);
    let cid = sub["customer"].as_str().unwrap().to_string();
    let ps = sim
        .post(
            "/v1/billing_portal/sessions",
            &[
                ("customer", cid.as_str()),
                ("return_url", "https://app.example/account"),
            ],
        )
        .await
        .ok();
    let url = ps["url"].as_str().unwrap().to_string();
    let html = sim
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "id=\"cancel-subscription\"",
        "id=\"update-card\"",
        "id=\"return\"",
        "https://app.example/account",
        "/invoice/in_",
        "$299.00",
    ] {
        assert!(html.contains(needle), "portal lacks {needle}");
    }
    let r = sim.http.post(format!("{url}/cancel")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["cancel_at_period_end"], true);
    let html = sim
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"reactivate-subscription\""));
    sim.http
        .post(format!("{url}/reactivate"))
        .send()
        .await
        .unwrap();
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["cancel_at_period_end"], false);
    let r = sim
        .http
        .post(format!("{url}/card"))
        .form(&[("cardNumber", "5555555555554444")])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("4444"));
    let cus = sim
        .get(&format!(
            "/v1/customers/{cid}?expand[]=invoice_settings.default_payment_method"
        ))
        .await
        .ok();
    assert_eq!(
        cus["invoice_settings"]["default_payment_method"]["card"]["last4"],
        "4444"
    );
}
