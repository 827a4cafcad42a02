use chrono::{DateTime, Months, Utc};

use crate::common::{id, Sim};

fn month_after(t: i64, n: u32) -> i64 {
    let d = DateTime::<Utc>::from_timestamp(t, 0).unwrap();
    d.checked_add_months(Months::new(n)).unwrap().timestamp()
}

#[tokio::test]
async fn clock_reads_and_moves_forward() {
    let sim = Sim::start().await;
    let c = sim.ctl_get("/_sim/clock").await;
    let now = c["now"].as_i64().unwrap();
    assert!((now - Utc::now().timestamp()).abs() < 5);
    assert!(c["iso"].as_str().unwrap().ends_with('Z'));
    let to = DateTime::<Utc>::from_timestamp(now + 86_400 * 40, 0)
        .unwrap()
        .to_rfc3339();
    let moved = sim.ctl("/_sim/clock/advance", &[("to", to.as_str())]).await;
    assert!((moved["now"].as_i64().unwrap() - (now + 86_400 * 40)).abs() <= 1);
    let cid = sim.customer("late@example.com").await;
    let c = sim.get(&format!("/v1/customers/{cid}")).await.ok();
    assert!(
        c["created"].as_i64().unwrap() >= now + 86_400 * 40,
        "objects carry sim time"
    );
    let back = sim
        .send(
            sim.http
                .post(sim.url("/_sim/clock/advance"))
                .form(&[("to", "2001-01-01T00:00:00Z")]),
        )
        .await;
    assert_eq!(back.status, 400);
}

#[tokio::test]
async fn trial_end_charges_and_activates() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 7, "4242424242424242").await;
    let sid = id(&sub);
    let trial_end = sub["trial_end"].as_i64().unwrap();
    let n_before = sim.event_types().await.len();
    sim.advance_days(8).await;
    let s = sim
        .get(&format!("/v1/subscriptions/{sid}?expand[]=latest_invoice"))
        .await
        .ok();
    assert_eq!(s["status"], "active");
    let item = &s["items"]["data"][0];
    assert_eq!(item["current_period_start"], trial_end);
    assert_eq!(item["current_period_end"], month_after(trial_end, 1));
    assert_eq!(s["latest_invoice"]["status"], "paid");
    assert_eq!(s["latest_invoice"]["amount_paid"], 29900);
    let line = &s["latest_invoice"]["lines"]["data"][0];
    assert_eq!(line["period"]["start"], trial_end);
    assert_eq!(
        line["description"],
        "1 × Thanotopolis Pro (at $299.00 / month)"
    );
    let events = sim.event_types().await;
    assert_eq!(
        events[n_before..],
        [
            "customer.subscription.trial_will_end",
            "customer.subscription.updated",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
        ]
    );
    let upd = sim
        .get("/v1/events?type=customer.subscription.updated&limit=1")
        .await
        .ok();
    assert_eq!(
        upd["data"][0]["data"]["previous_attributes"]["status"],
        "trialing"
    );
    assert_eq!(
        upd["data"][0]["created"], trial_end,
        "events carry the moment they happened"
    );
}

#[tokio::test]
async fn periods_renew_monthly_with_invoices() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, "4242424242424242").await;
    let sid = id(&sub);
    let anchor = sub["billing_cycle_anchor"].as_i64().unwrap();
    sim.advance_days(95).await;
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["status"], "active");
    assert_eq!(
        s["items"]["data"][0]["current_period_start"],
        month_after(anchor, 3)
    );
    assert_eq!(
        s["items"]["data"][0]["current_period_end"],
        month_after(anchor, 4)
    );
    let invs = sim
        .get(&format!("/v1/invoices?subscription={sid}&status=paid"))
        .await
        .ok();
    let data = invs["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    assert_eq!(data[0]["billing_reason"], "subscription_cycle");
    assert_eq!(data[0]["period_start"], month_after(anchor, 2));
    assert_eq!(data[0]["period_end"], month_after(anchor, 3));
}

#[tokio::test]
async fn pending_items_join_the_renewal_invoice() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, "4242424242424242").await;
    let cid = sub["customer"].as_str().unwrap();
    sim.post(
        "/v1/invoiceitems",
        &[
            ("customer", cid),
            ("amount", "150"),
            ("currency", "usd"),
            ("description", "Phone Calls: 3 calls"),
        ],
    )
    .await
    .ok();
    sim.advance_days(32).await;
    let s = sim
        .get(&format!(
            "/v1/subscriptions/{}?expand[]=latest_invoice",
            id(&sub)
        ))
        .await
        .ok();
    let inv = &s["latest_invoice"];
    assert_eq!(inv["total"], 30050);
    assert_eq!(
        inv["lines"]["data"][1]["parent"]["type"],
        "invoice_item_details"
    );
}

#[tokio::test]
async fn cancel_at_period_end_deletes_at_period_end() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 0, "4242424242424242").await;
    let sid = id(&sub);
    let end = sub["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    sim.post(
        &format!("/v1/subscriptions/{sid}"),
        &[("cancel_at_period_end", "true")],
    )
    .await
    .ok();
    sim.advance_days(10).await;
    assert_eq!(
        sim.get(&format!("/v1/subscriptions/{sid}")).await.ok()["status"],
        "active"
    );
    sim.advance_days(30).await;
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["status"], "canceled");
    assert_eq!(s["ended_at"], end);
    let deleted = sim
        .get("/v1/events?type=customer.subscription.deleted")
        .await
        .ok();
    assert_eq!(deleted["data"][0]["data"]["object"]["id"], sid.as_str());
    let invs = sim
        .get(&format!("/v1/invoices?subscription={sid}"))
        .await
        .ok();
    assert_eq!(
        invs["data"].as_array().map(Vec::len),
        Some(1),
        "no renewal invoice"
    );
}

#[tokio::test]
async fn past_due_recovers_when_paid_with_a_new_card() {
    let sim = Sim::start().await;
    let price = sim.monthly_price(29900).await;
    let sub = sim.subscribe(&price, 3, "4000000000000341").await;
    let sid = id(&sub);
    let cid = sub["customer"].as_str().unwrap().to_string();
    sim.advance_days(4).await;
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["status"], "past_due");
    let inv = s["latest_invoice"].as_str().unwrap().to_string();
    let declined = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await;
    assert_eq!(declined.status, 402);
    assert_eq!(
        sim.get(&format!("/v1/invoices/{inv}")).await.ok()["attempt_count"],
        2
    );
    // The portal writes the new card on the subscription too, so `/pay` charges it.
    sim.ctl("/_sim/portal/card_update_writes", &[("writes", "both")])
        .await;
    sim.ctl(
        &format!("/_sim/customers/{cid}/card"),
        &[("card", "4242424242424242")],
    )
    .await;
    let paid = sim.post(&format!("/v1/invoices/{inv}/pay"), &[]).await.ok();
    assert_eq!(paid["status"], "paid");
    let s = sim.get(&format!("/v1/subscriptions/{sid}")).await.ok();
    assert_eq!(s["status"], "active");
}
