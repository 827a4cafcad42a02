//! The super admin's revenue overview, with subscriptions driven through the simulator into each state.

use crate::helpers::{super_admin, token, TestApp};
use crate::store_tests;
use serde_json::{json, Value};
use thanotopolis_billing::db::invoices::{self, InvoiceRow};

const GOOD_CARD: &str = "4242424242424242";
const FAILING_CARD: &str = "4000000000000341";

store_tests!(
    overview_counts_each_state_and_leaves_demo_out,
    overview_is_for_super_admins
);

fn org<'a>(overview: &'a Value, tenant: &str) -> &'a Value {
    overview["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["tenant_id"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} missing from {overview}"))
}

async fn advance(app: &TestApp, seconds: i64) {
    app.advance_clock(seconds).await;
    app.settle().await;
}

async fn overview_counts_each_state_and_leaves_demo_out(app: TestApp) {
    for t in ["churned", "pastdue", "active", "trialing", "demo", "idle"] {
        app.add_tenant(t).await;
    }
    // Churned: canceled at period end, then the period ends.
    app.subscribe("churned", None, GOOD_CARD).await;
    app.post(
        "/api/billing/cancel-subscription",
        Some(&token("churned", "org_admin")),
        &json!({}),
    )
    .await
    .expect(200);
    advance(&app, 32 * 86_400).await;
    // Past due: a trial whose first charge fails.
    app.subscribe("pastdue", Some(3), FAILING_CARD).await;
    advance(&app, 4 * 86_400).await;
    // Subscribed after the clock moves, so that their states hold.
    app.subscribe("active", None, GOOD_CARD).await;
    app.subscribe("trialing", Some(14), GOOD_CARD).await;
    app.subscribe("demo", None, GOOD_CARD).await;
    app.post(
        "/api/billing/set-demo-status/demo?is_demo=true",
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);

    // Usage this month for the active tenant, and a paid usage invoice for it.
    app.post(
        "/api/usage/events",
        Some(&token("platform", "service")),
        &json!({"events": [
            {"event_id": "e1", "tenant_id": "active", "type": "stt_words", "quantity": 1000},
            {"event_id": "e2", "tenant_id": "active", "type": "tts_words", "quantity": 500},
            {"event_id": "e3", "tenant_id": "active", "type": "phone_calls", "quantity": 1},
        ]}),
    )
    .await
    .expect(200);
    let now = thanotopolis_billing::domain::time::now();
    let usage_invoice = InvoiceRow {
        stripe_invoice_id: "in_usage_test".into(),
        tenant_id: "active".into(),
        stripe_customer_id: "cus_test".into(),
        stripe_subscription_id: None,
        billing_period: Some("2026-01".into()),
        status: "paid".into(),
        number: None,
        period_start: None,
        period_end: None,
        amount_due_cents: 1234,
        amount_paid_cents: 1234,
        currency: "usd".into(),
        hosted_invoice_url: Some("https://invoice.example/in_usage_test".into()),
        invoice_pdf: None,
        paid_at: Some(now),
        due_date: None,
        lines: vec![],
        // In the future of every simulator invoice, so it is the tenant's last invoice.
        stripe_created_at: now + chrono::Duration::days(400),
        stripe_updated_at: now + chrono::Duration::days(400),
    };
    invoices::upsert(&app.db, &usage_invoice).await.unwrap();

    let o = app
        .get("/api/admin/billing/overview", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    // MRR: the active and the past-due subscription; not trialing, not demo, not ended.
    assert_eq!(o["mrr_cents"], 2 * 29_900, "{o}");
    assert_eq!(o["active_subscriptions"], 1, "{o}");
    assert_eq!(o["trialing_subscriptions"], 1, "{o}");
    assert_eq!(o["past_due_subscriptions"], 1, "{o}");
    assert_eq!(o["churned_30d"], 1, "{o}");
    assert_eq!(o["failed_payments_30d"], 1, "{o}");
    assert_eq!(o["usage_revenue_cents"], 1234, "{o}");

    assert_eq!(org(&o, "active")["subscription_status"], "active");
    assert_eq!(org(&o, "active")["mrr_cents"], 29_900);
    assert_eq!(org(&o, "pastdue")["subscription_status"], "past_due");
    assert_eq!(org(&o, "pastdue")["mrr_cents"], 29_900);
    // Its renewal's payment failed: flagged, with the open invoice behind it.
    let flag = &org(&o, "pastdue")["payment_flag"];
    assert_eq!(flag["reason"], "past_due", "{o}");
    assert_eq!(flag["failed_invoices"].as_array().unwrap().len(), 1, "{o}");
    assert_eq!(flag["amount_due_cents"], 29_900, "{o}");
    for ok in ["active", "trialing", "churned", "demo", "idle"] {
        assert_eq!(org(&o, ok)["payment_flag"], Value::Null, "{ok}: {o}");
    }
    assert_eq!(org(&o, "trialing")["subscription_status"], "trialing");
    assert_eq!(org(&o, "trialing")["mrr_cents"], 0);
    assert_eq!(org(&o, "churned")["subscription_status"], "canceled");
    assert_eq!(org(&o, "churned")["mrr_cents"], 0);
    assert_eq!(org(&o, "demo")["is_demo"], true);
    assert_eq!(org(&o, "demo")["mrr_cents"], 0);
    assert_eq!(org(&o, "idle")["subscription_status"], Value::Null);
    assert_eq!(org(&o, "idle")["last_invoice"], Value::Null);

    let active = org(&o, "active");
    assert_eq!(
        active["usage_this_month"],
        json!({"stt_words": 1000, "tts_words": 500, "phone_calls": 1})
    );
    // 1,500 words at $1.00 per 1,000 = $1.50, plus one call at $1.00: as the dashboard says.
    assert_eq!(active["upcoming_usage_cents"], 250);
    let dash = app
        .get("/api/billing/dashboard", Some(&token("active", "member")))
        .await
        .expect(200)
        .body;
    assert_eq!(
        active["upcoming_usage_cents"],
        dash["upcoming_charges"]["total_charges_cents"]
    );
    assert_eq!(active["last_invoice"]["stripe_invoice_id"], "in_usage_test");
    assert_eq!(active["last_invoice"]["amount_due_cents"], 1234);

    let monthly = o["monthly"].as_array().unwrap();
    assert_eq!(monthly.len(), 12);
    let this_month = monthly.last().unwrap();
    assert_eq!(this_month["words"], 1500, "{o}");
    assert_eq!(this_month["calls"], 1, "{o}");
    assert_eq!(this_month["usage_revenue_cents"], 1234);
    assert!(
        monthly
            .iter()
            .map(|m| m["subscription_revenue_cents"].as_i64().unwrap())
            .sum::<i64>()
            > 0,
        "paid subscription invoices show in the history: {o}"
    );
    let periods: Vec<&str> = monthly
        .iter()
        .map(|m| m["period"].as_str().unwrap())
        .collect();
    let mut sorted = periods.clone();
    sorted.sort();
    assert_eq!(periods, sorted, "oldest month first");
}

async fn overview_is_for_super_admins(app: TestApp) {
    app.add_tenant("acme").await;
    app.get("/api/admin/billing/overview", None)
        .await
        .expect(401);
    for role in ["member", "org_admin", "admin", "service"] {
        app.get("/api/admin/billing/overview", Some(&token("acme", role)))
            .await
            .expect(403);
    }
    let o = app
        .get("/api/admin/billing/overview", Some(&super_admin()))
        .await
        .expect(200)
        .body;
    assert_eq!(o["mrr_cents"], 0);
    assert_eq!(org(&o, "acme")["subscription_status"], Value::Null);
}
