//! Inputs schemathesis and probing found to answer 500 on PostgreSQL (NUL, which its text cannot hold)
//! or to be refused although the document allows them (`25.0` is an integer to JSON Schema).

use crate::helpers::{super_admin, token, TestApp};
use crate::store_tests;
use serde_json::json;

store_tests!(
    control_characters_are_refused_not_stored,
    an_impossible_run_id_is_not_found,
    whole_numbers_written_with_a_fraction_are_accepted
);

async fn control_characters_are_refused_not_stored(app: TestApp) {
    let admin = super_admin();
    let reply = app
        .post(
            "/api/admin/tenants",
            Some(&admin),
            &json!({"id": "nul", "name": "Acme\u{0}Corp", "subdomain": "nul"}),
        )
        .await
        .expect(422);
    assert_eq!(reply.body["code"], "invalid_tenant");

    app.add_tenant("acme").await;
    let reply = app
        .post(
            "/api/usage/events",
            Some(&admin),
            &json!({"events": [{"event_id": "call\u{0}1", "tenant_id": "acme", "type": "phone_calls", "quantity": 1}]}),
        )
        .await
        .expect(422);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("events[0].event_id"),
        "{}",
        reply.text
    );

    let reply = app
        .post(
            "/api/billing/create-checkout-session",
            Some(&token("acme", "org_admin")),
            &json!({"success_url": "https://app.example.com/\u{0}", "cancel_url": "https://app.example.com/"}),
        )
        .await
        .expect(422);
    assert_eq!(reply.body["code"], "invalid_url");
}

async fn an_impossible_run_id_is_not_found(app: TestApp) {
    for id in ["run%00x", "%FF", "r%20un"] {
        let reply = app
            .get(
                &format!("/api/admin/billing/runs/{id}"),
                Some(&super_admin()),
            )
            .await;
        assert!(
            matches!(reply.status, 404 | 422),
            "{id}: {} {}",
            reply.status,
            reply.text
        );
        assert!(reply.body["code"].is_string(), "{id}: {}", reply.text);
    }
}

async fn whole_numbers_written_with_a_fraction_are_accepted(app: TestApp) {
    app.add_tenant("acme").await;
    let reply = app
        .post(
            "/api/usage/events",
            Some(&super_admin()),
            &json!({"events": [{"event_id": "e1", "tenant_id": "acme", "type": "stt_words", "quantity": 3.0}]}),
        )
        .await
        .expect(200);
    assert_eq!(reply.body["accepted"], 1);
    let reply = app
        .post(
            "/api/usage/events",
            Some(&super_admin()),
            &json!({"events": [{"event_id": "e2", "tenant_id": "acme", "type": "stt_words", "quantity": 2.5}]}),
        )
        .await
        .expect(422);
    assert!(reply.text.contains("quantity"), "{}", reply.text);

    let reply = app
        .post(
            "/api/billing/create-checkout-session",
            Some(&token("acme", "org_admin")),
            &json!({"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/", "trial_days": 14.0}),
        )
        .await
        .expect(200);
    assert!(reply.body["checkout_url"].is_string());
    let reply = app
        .post(
            "/api/billing/create-checkout-session",
            Some(&token("acme", "org_admin")),
            &json!({"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/", "trial_days": 1.5}),
        )
        .await
        .expect(422);
    assert_eq!(reply.body["code"], "invalid_json");
}
