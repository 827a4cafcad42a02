//! `GET /api/billing/access`: every billing state gives the platform its answer.

use crate::helpers::{super_admin, token, TestApp};
use crate::store_tests;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use thanotopolis_billing::db::{invoices, subscriptions, webhook_events};

const GOOD_CARD: &str = "4242424242424242";
const FAILING_CARD: &str = "4000000000000341";

store_tests!(
    access_follows_the_subscription_through_stripe,
    access_for_each_mirrored_state,
    who_may_ask,
);

async fn access(app: &TestApp, tenant: &str) -> Value {
    app.get("/api/billing/access", Some(&token(tenant, "member")))
        .await
        .expect(200)
        .body
}

fn answer(v: &Value) -> (bool, &str) {
    (
        v["allowed"].as_bool().unwrap(),
        v["reason"].as_str().unwrap(),
    )
}

async fn access_follows_the_subscription_through_stripe(app: TestApp) {
    app.add_tenant("acme").await;
    let a = access(&app, "acme").await;
    assert_eq!(answer(&a), (false, "none"));
    assert_eq!(a["tenant_id"], "acme");
    assert!(a["until"].is_null());

    app.subscribe("acme", Some(3), FAILING_CARD).await;
    let a = access(&app, "acme").await;
    assert_eq!(answer(&a), (true, "trialing"));
    let sub = app.live_subscription("acme").await.unwrap();
    let trial_end = sub.trial_end.unwrap();
    assert_eq!(
        a["until"].as_str().unwrap(),
        thanotopolis_billing::domain::time::rfc3339(trial_end)
    );

    // The first charge at the trial's end fails: allowed for the grace days after the failure.
    app.advance_clock(4 * 86_400).await;
    app.settle().await;
    let a = access(&app, "acme").await;
    assert_eq!(answer(&a), (true, "past_due"), "{a}");
    let until = chrono::DateTime::parse_from_rfc3339(a["until"].as_str().unwrap()).unwrap();
    assert_eq!(until.with_timezone(&Utc) - trial_end, Duration::days(7));

    // Cancel at period end on a paying tenant: allowed until the period ends.
    app.add_tenant("beta").await;
    app.subscribe("beta", None, GOOD_CARD).await;
    assert_eq!(answer(&access(&app, "beta").await), (true, "active"));
    app.post(
        "/api/billing/cancel-subscription",
        Some(&token("beta", "org_admin")),
        &json!({}),
    )
    .await
    .expect(200);
    let a = access(&app, "beta").await;
    assert_eq!(answer(&a), (true, "canceling"));
    let end = app
        .live_subscription("beta")
        .await
        .unwrap()
        .current_period_end;
    assert_eq!(
        a["until"].as_str().unwrap(),
        thanotopolis_billing::domain::time::rfc3339(end.unwrap())
    );

    // Demo: full access, open-ended.
    app.post(
        "/api/billing/set-demo-status/beta?is_demo=true",
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);
    let a = access(&app, "beta").await;
    assert_eq!(answer(&a), (true, "demo"));
    assert!(a["until"].is_null());
}

fn row(tenant: &str, id: &str, status: &str) -> subscriptions::SubscriptionRow {
    let now = thanotopolis_billing::domain::time::now();
    subscriptions::SubscriptionRow {
        stripe_subscription_id: id.into(),
        tenant_id: tenant.into(),
        stripe_customer_id: format!("cus_{tenant}"),
        status: status.into(),
        price_id: None,
        amount_cents: 29_900,
        currency: "usd".into(),
        current_period_start: Some(now - Duration::days(20)),
        current_period_end: Some(now + Duration::days(10)),
        trial_start: None,
        trial_end: None,
        cancel_at_period_end: false,
        canceled_at: None,
        ended_at: None,
        stripe_created_at: now - Duration::days(20),
        stripe_updated_at: now,
    }
}

/// States the simulator reaches only over weeks (grace running out, unpaid, ended), written into our
/// copy as webhooks would leave them.
async fn access_for_each_mirrored_state(app: TestApp) {
    let now = thanotopolis_billing::domain::time::now();
    for (tenant, status) in [
        ("unpaid", "unpaid"),
        ("ended", "canceled"),
        ("late", "past_due"),
        ("grace", "past_due"),
    ] {
        app.add_tenant(tenant).await;
        let mut s = row(tenant, &format!("sub_{tenant}"), status);
        if status == "canceled" {
            s.ended_at = Some(now - Duration::days(1));
        }
        subscriptions::upsert(&app.db, &s).await.unwrap();
    }
    // "late" failed ten days ago, "grace" two days ago, each on an invoice still open.
    for (tenant, days) in [("late", 10), ("grace", 2)] {
        let at = now - Duration::days(days);
        let inv = format!("in_{tenant}");
        invoices::upsert(
            &app.db,
            &invoices::InvoiceRow {
                stripe_invoice_id: inv.clone(),
                tenant_id: tenant.into(),
                stripe_customer_id: format!("cus_{tenant}"),
                stripe_subscription_id: Some(format!("sub_{tenant}")),
                billing_period: None,
                status: "open".into(),
                number: None,
                period_start: None,
                period_end: None,
                amount_due_cents: 29_900,
                amount_paid_cents: 0,
                currency: "usd".into(),
                hosted_invoice_url: None,
                invoice_pdf: None,
                paid_at: None,
                due_date: None,
                lines: vec![],
                stripe_created_at: at,
                stripe_updated_at: at,
            },
        )
        .await
        .unwrap();
        let event = format!("evt_{tenant}");
        webhook_events::receive(&app.db, &event, "invoice.payment_failed", Some(&inv), at)
            .await
            .unwrap();
        webhook_events::mark_applied(&app.db, &event, Some(tenant))
            .await
            .unwrap();
    }
    assert_eq!(answer(&access(&app, "unpaid").await), (false, "suspended"));
    assert_eq!(answer(&access(&app, "ended").await), (false, "canceled"));
    assert_eq!(answer(&access(&app, "late").await), (false, "suspended"));
    let a = access(&app, "grace").await;
    assert_eq!(answer(&a), (true, "past_due"));
    let until = chrono::DateTime::parse_from_rfc3339(a["until"].as_str().unwrap()).unwrap();
    assert_eq!(
        until.with_timezone(&Utc),
        now - Duration::days(2) + Duration::days(7)
    );
}

async fn who_may_ask(app: TestApp) {
    app.add_tenant("acme").await;
    app.add_tenant("beta").await;
    for role in ["member", "user", "org_admin", "admin"] {
        app.get("/api/billing/access", Some(&token("acme", role)))
            .await
            .expect(200);
        // A tenant's user never sees another tenant.
        app.get(
            "/api/billing/access?tenant_id=beta",
            Some(&token("acme", role)),
        )
        .await
        .expect(403);
    }
    for t in [super_admin(), token("platform", "service")] {
        let a = app
            .get("/api/billing/access?tenant_id=beta", Some(&t))
            .await
            .expect(200)
            .body;
        assert_eq!(a["tenant_id"], "beta");
    }
    let r = app
        .get("/api/billing/access?tenant_id=nobody", Some(&super_admin()))
        .await
        .expect(404);
    assert_eq!(r.body["code"], "tenant_not_found");
    app.get("/api/billing/access", None).await.expect(401);
}
