//! `POST /api/billing/webhook`: signatures, duplicates, order, and failures that Stripe must retry.

use crate::helpers::{spawn_app_with, token, Store, TestApp, WEBHOOK_SECRET};
use crate::store_tests;
use thanotopolis_billing::stripe::webhook::sign;

store_tests!(
    bad_or_stale_signatures_are_400,
    redelivered_events_change_nothing,
    old_events_never_move_state_backwards,
    a_failed_apply_is_5xx_and_succeeds_on_redelivery,
    unhandled_event_types_are_acknowledged,
    stripes_order_wins_over_a_fast_clock,
    a_second_live_subscription_is_canceled_at_once,
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> crate::helpers::Reply {
    let mut req = app
        .client
        .post(app.url("/api/billing/webhook"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = signature {
        req = req.header("Stripe-Signature", s);
    }
    crate::helpers::Reply::from(req.send().await.unwrap()).await
}

/// The simulator's copy of an event, as Stripe would deliver it.
async fn event(app: &TestApp, event_type: &str) -> String {
    let events = app
        .sim_get(&format!("/v1/events?type={event_type}&limit=1"))
        .await
        .expect(200);
    serde_json::to_string(&events.body["data"][0]).unwrap()
}

async fn bad_or_stale_signatures_are_400(app: TestApp) {
    let body = r#"{"id":"evt_forged","type":"customer.subscription.deleted","created":1,"data":{"object":{"id":"sub_x"}}}"#;
    let r = deliver(&app, body, None).await.expect(400);
    assert_eq!(r.body["code"], "invalid_signature");
    deliver(
        &app,
        body,
        Some(sign(body.as_bytes(), "whsec_wrong", now())),
    )
    .await
    .expect(400);
    deliver(
        &app,
        body,
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now() - 301)),
    )
    .await
    .expect(400);
    deliver(
        &app,
        body,
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now() + 301)),
    )
    .await
    .expect(400);
    deliver(&app, body, Some("t=abc,v1=zz".into()))
        .await
        .expect(400);
    // A valid signature over other bytes fails.
    deliver(&app, body, Some(sign(b"{}", WEBHOOK_SECRET, now())))
        .await
        .expect(400);
    // Nothing was recorded.
    assert_eq!(
        app.webhook_events_recorded("customer.subscription.deleted", 1)
            .await,
        0
    );
}

#[tokio::test]
async fn an_empty_secret_rejects_everything() {
    for store in [Store::Sqlite, Store::Postgres] {
        let app = spawn_app_with(store, |v| {
            v.insert("STRIPE_WEBHOOK_SECRET".into(), String::new());
        })
        .await;
        let body =
            r#"{"id":"evt_1","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1"}}}"#;
        for sig in [
            sign(body.as_bytes(), "", now()),
            sign(body.as_bytes(), WEBHOOK_SECRET, now()),
        ] {
            let r = deliver(&app, body, Some(sig)).await.expect(400);
            assert!(
                r.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("no webhook secret"),
                "{}",
                r.text
            );
        }
    }
}

async fn redelivered_events_change_nothing(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let body = event(&app, "customer.subscription.created").await;
    for _ in 0..3 {
        let r = deliver(
            &app,
            &body,
            Some(sign(body.as_bytes(), WEBHOOK_SECRET, now())),
        )
        .await
        .expect(200);
        assert_eq!(r.body["received"], true);
        assert_eq!(r.body["duplicate"], true);
    }
    let subs = thanotopolis_billing::db::subscriptions::for_tenant(&app.db, "acme")
        .await
        .unwrap();
    assert_eq!(subs.len(), 1);
}

async fn old_events_never_move_state_backwards(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let admin = token("acme", "admin");
    app.post(
        "/api/billing/cancel-subscription",
        Some(&admin),
        &serde_json::json!({}),
    )
    .await
    .expect(200);
    app.settle().await;
    // An old "created" event (cancel_at_period_end false in its copy), delivered late under a new id.
    let mut old: serde_json::Value =
        serde_json::from_str(&event(&app, "customer.subscription.created").await).unwrap();
    old["id"] = "evt_late_copy".into();
    let body = old.to_string();
    deliver(
        &app,
        &body,
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now())),
    )
    .await
    .expect(200);
    let sub = app.live_subscription("acme").await.unwrap();
    assert!(
        sub.cancel_at_period_end,
        "a late event must not undo the cancellation"
    );
}

async fn a_failed_apply_is_5xx_and_succeeds_on_redelivery(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let mut ev: serde_json::Value =
        serde_json::from_str(&event(&app, "invoice.paid").await).unwrap();
    ev["id"] = "evt_retry_me".into();
    let body = ev.to_string();
    // Stripe is down while we re-read the invoice: answer 5xx so Stripe retries.
    app.sim_post(
        "/_sim/faults",
        &[("path", "/v1/invoices"), ("status", "500"), ("count", "20")],
    )
    .await
    .expect(200);
    let r = deliver(
        &app,
        &body,
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now())),
    )
    .await;
    assert!(r.status >= 500, "{}", r.text);
    assert_eq!(r.body["code"], "webhook_failed");
    assert!(!r.text.contains("sk_test"), "no secrets in answers");
    app.client
        .delete(format!("{}/_sim/faults", app.sim))
        .send()
        .await
        .unwrap();
    // The redelivery is applied, not refused as a duplicate.
    let r = deliver(
        &app,
        &body,
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now())),
    )
    .await
    .expect(200);
    assert!(r.body.get("duplicate").is_none(), "{}", r.text);
    let r = deliver(
        &app,
        &body,
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now())),
    )
    .await
    .expect(200);
    assert_eq!(r.body["duplicate"], true);
}

async fn unhandled_event_types_are_acknowledged(app: TestApp) {
    let body = format!(
        r#"{{"id":"evt_other","type":"charge.refunded","created":{},"data":{{"object":{{"id":"ch_1"}}}}}}"#,
        now()
    );
    let r = deliver(
        &app,
        &body,
        Some(sign(body.as_bytes(), WEBHOOK_SECRET, now())),
    )
    .await
    .expect(200);
    assert_eq!(r.body["received"], true);
    let r = deliver(
        &app,
        "not json",
        Some(sign(b"not json", WEBHOOK_SECRET, now())),
    )
    .await
    .expect(400);
    assert_eq!(r.body["code"], "invalid_event");
}

store_tests!(chaos_every_event_three_times_shuffled_ends_as_stripe_says);

/// A subscription's whole life, then every event of it delivered three times in shuffled order, racing
/// and some late: our copy ends exactly as Stripe's objects are.
async fn chaos_every_event_three_times_shuffled_ends_as_stripe_says(app: TestApp) {
    use rand::seq::SliceRandom;
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    app.subscribe("acme", Some(3), "4242424242424242").await;
    app.subscribe("beta", Some(2), "4000000000000341").await;
    let admin = token("acme", "admin");
    app.post(
        "/api/billing/cancel-subscription",
        Some(&admin),
        &serde_json::json!({}),
    )
    .await
    .expect(200);
    app.post(
        "/api/billing/reactivate-subscription",
        Some(&admin),
        &serde_json::json!({}),
    )
    .await
    .expect(200);
    app.advance_clock(4 * 86_400).await;
    app.post(
        "/api/billing/cancel-subscription",
        Some(&admin),
        &serde_json::json!({}),
    )
    .await
    .expect(200);
    app.advance_clock(40 * 86_400).await;
    app.settle().await;

    let events = app.sim_get("/v1/events?limit=100").await.expect(200).body;
    let mut bodies: Vec<String> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        bodies.len() > 15,
        "a full life has many events: {}",
        bodies.len()
    );
    bodies = bodies
        .iter()
        .cycle()
        .take(bodies.len() * 3)
        .cloned()
        .collect();
    bodies.shuffle(&mut rand::rng());
    // All at once, some late: handlers race each other for the same objects.
    let mut deliveries = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let (client, url) = (app.client.clone(), app.url("/api/billing/webhook"));
        deliveries.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis((i as u64 * 37) % 150)).await;
            let sig = sign(body.as_bytes(), WEBHOOK_SECRET, now());
            client
                .post(url)
                .header("content-type", "application/json")
                .header("Stripe-Signature", sig)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for d in deliveries {
        assert_eq!(d.await.unwrap(), 200);
    }

    for tenant in ["acme", "beta"] {
        for ours in thanotopolis_billing::db::subscriptions::for_tenant(&app.db, tenant)
            .await
            .unwrap()
        {
            let theirs = app
                .sim_get(&format!(
                    "/v1/subscriptions/{}",
                    ours.stripe_subscription_id
                ))
                .await
                .body;
            assert_eq!(ours.status, theirs["status"].as_str().unwrap(), "{tenant}");
            assert_eq!(
                ours.cancel_at_period_end,
                theirs["cancel_at_period_end"].as_bool().unwrap()
            );
            assert_eq!(
                ours.ended_at.map(|t| t.timestamp()),
                theirs["ended_at"].as_i64()
            );
            let end = theirs["items"]["data"][0]["current_period_end"].as_i64();
            assert_eq!(ours.current_period_end.map(|t| t.timestamp()), end);
        }
        let ours = app
            .get(
                "/api/billing/invoices?limit=100",
                Some(&token(tenant, "member")),
            )
            .await
            .expect(200)
            .body;
        for inv in ours["invoices"].as_array().unwrap() {
            let theirs = app
                .sim_get(&format!(
                    "/v1/invoices/{}",
                    inv["stripe_invoice_id"].as_str().unwrap()
                ))
                .await
                .body;
            assert_eq!(inv["status"], theirs["status"]);
            assert_eq!(inv["amount_paid_cents"], theirs["amount_paid"]);
        }
    }
    let acme = thanotopolis_billing::db::subscriptions::for_tenant(&app.db, "acme")
        .await
        .unwrap();
    assert_eq!(acme[0].status, "canceled");
    let beta = app.live_subscription("beta").await;
    assert!(beta.is_none() || beta.unwrap().status != "active");
}

/// A replica whose clock runs an hour fast stores an older reading: Stripe's clock at each reading (the
/// `Date` of its answer) decides, not the replicas' clocks.
async fn stripes_order_wins_over_a_fast_clock(app: TestApp) {
    use thanotopolis_billing::db::subscriptions::{get, upsert_versioned};
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let newer = app.live_subscription("acme").await.unwrap();
    let mut fresh = newer.clone();
    fresh.cancel_at_period_end = true;
    fresh.stripe_updated_at = thanotopolis_billing::domain::time::now();
    let mut stale = newer.clone();
    stale.cancel_at_period_end = false;
    stale.stripe_updated_at = fresh.stripe_updated_at + chrono::Duration::hours(1);
    let t = now();
    assert!(upsert_versioned(&app.db, &fresh, Some(t + 10))
        .await
        .unwrap());
    assert!(
        !upsert_versioned(&app.db, &stale, Some(t + 5))
            .await
            .unwrap(),
        "a reading Stripe answered earlier is refused"
    );
    assert!(
        get(&app.db, &newer.stripe_subscription_id)
            .await
            .unwrap()
            .unwrap()
            .cancel_at_period_end
    );
    // Our own readings go in at the version already stored.
    let mut ours = fresh.clone();
    ours.status = "past_due".into();
    ours.stripe_updated_at = fresh.stripe_updated_at + chrono::Duration::seconds(1);
    assert!(upsert_versioned(&app.db, &ours, None).await.unwrap());
}

/// Stripe ends with two live subscriptions for one tenant (one made outside our checkout): the newer
/// is canceled at once, and the audit log says so.
async fn a_second_live_subscription_is_canceled_at_once(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let first = app.live_subscription("acme").await.unwrap();
    let s = app
        .sim_get(&format!(
            "/v1/subscriptions/{}",
            first.stripe_subscription_id
        ))
        .await
        .expect(200)
        .body;
    let pm = s["default_payment_method"].as_str().unwrap().to_owned();
    let price = s["items"]["data"][0]["price"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A minute later (Stripe's `created` counts seconds: "newer" is a later second).
    app.advance_clock(60).await;
    let second = app
        .sim_post(
            "/v1/subscriptions",
            &[
                ("customer", first.stripe_customer_id.as_str()),
                ("items[0][price]", price.as_str()),
                ("default_payment_method", pm.as_str()),
                ("metadata[tenant_id]", "acme"),
            ],
        )
        .await
        .expect(200)
        .body;
    let second_id = second["id"].as_str().unwrap();
    app.settle().await;
    let theirs = app
        .sim_get(&format!("/v1/subscriptions/{second_id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(theirs["status"], "canceled", "{theirs}");
    assert_eq!(
        app.live_subscription("acme")
            .await
            .unwrap()
            .stripe_subscription_id,
        first.stripe_subscription_id
    );
    let log = thanotopolis_billing::db::audit::recent(&app.db, 10)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "subscription.duplicate_canceled" && e.detail.contains(second_id)),
        "{log:?}"
    );
}
