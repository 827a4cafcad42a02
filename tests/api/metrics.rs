use crate::helpers::{token, TestApp};
use crate::store_tests;
use serde_json::json;

store_tests!(metrics_count_requests_usage_and_stripe_calls);

async fn metrics_count_requests_usage_and_stripe_calls(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let events = json!({"events": [{"event_id": "m1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1}]});
    app.post("/api/usage/events", Some(&token("p", "service")), &events)
        .await
        .expect(200);
    app.post("/api/usage/events", Some(&token("p", "service")), &events)
        .await
        .expect(200);
    let r = app.get("/metrics", None).await.expect(200);
    let text = r.text;
    assert!(text.contains("# TYPE http_requests_total counter"));
    assert!(
        text.contains(
            r#"http_requests_total{method="POST",route="/api/usage/events",status="200"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"usage_events_total{outcome="duplicate"}"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"stripe_requests_total{method="POST",endpoint="/v1/checkout/sessions",outcome="ok"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"webhooks_total{type="customer.subscription.created",outcome="applied"}"#),
        "{text}"
    );
    // Route patterns, never raw paths with ids or secrets.
    assert!(!text.contains("sk_test"));
}
