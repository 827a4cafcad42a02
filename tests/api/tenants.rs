use crate::helpers::{super_admin, TestApp};
use crate::store_tests;
use serde_json::json;

store_tests!(
    super_admin_adds_and_lists_tenants,
    duplicate_tenants_conflict,
    invalid_tenants_are_422_with_the_field,
    malformed_json_is_a_clear_422
);

async fn super_admin_adds_and_lists_tenants(app: TestApp) {
    let reply = app
        .post(
            "/api/admin/tenants",
            Some(&super_admin()),
            &json!({"id": "3f1c1f0e-9b7a-4c1e-8d55-2f2b7d0c6a11", "name": "Acme Funeral Home", "subdomain": "acme"}),
        )
        .await
        .expect(201);
    assert_eq!(reply.body["id"], "3f1c1f0e-9b7a-4c1e-8d55-2f2b7d0c6a11");
    assert_eq!(reply.body["name"], "Acme Funeral Home");
    assert_eq!(reply.body["subdomain"], "acme");
    assert_eq!(reply.body["is_demo"], false);
    app.add_tenant("beta").await;
    let list = app
        .get("/api/admin/tenants", Some(&super_admin()))
        .await
        .expect(200);
    let ids: Vec<&str> = list.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"beta"));
}

async fn duplicate_tenants_conflict(app: TestApp) {
    app.add_tenant("acme").await;
    let same_id = app
        .post(
            "/api/admin/tenants",
            Some(&super_admin()),
            &json!({"id": "acme", "name": "Other", "subdomain": "other"}),
        )
        .await
        .expect(409);
    assert_eq!(same_id.body["code"], "tenant_exists");
    let same_sub = app
        .post(
            "/api/admin/tenants",
            Some(&super_admin()),
            &json!({"id": "zeta", "name": "Zeta", "subdomain": "acme"}),
        )
        .await
        .expect(409);
    assert!(
        same_sub.body["detail"]
            .as_str()
            .unwrap()
            .contains("subdomain"),
        "{}",
        same_sub.text
    );
    // The first tenant is untouched.
    let list = app
        .get("/api/admin/tenants", Some(&super_admin()))
        .await
        .expect(200);
    assert_eq!(list.body["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["tenants"][0]["name"], "Org acme");
}

async fn invalid_tenants_are_422_with_the_field(app: TestApp) {
    let long = "x".repeat(65);
    for (body, field) in [
        (json!({"id": long, "name": "N", "subdomain": "n"}), "id"),
        (json!({"id": "a b", "name": "N", "subdomain": "n"}), "id"),
        (json!({"id": "n", "name": "  ", "subdomain": "n"}), "name"),
        (
            json!({"id": "n", "name": "N", "subdomain": "Not Valid!"}),
            "subdomain",
        ),
    ] {
        let reply = app
            .post("/api/admin/tenants", Some(&super_admin()), &body)
            .await
            .expect(422);
        assert!(
            reply.body["detail"].as_str().unwrap().starts_with(field),
            "detail should name {field}: {}",
            reply.text
        );
    }
}

async fn malformed_json_is_a_clear_422(app: TestApp) {
    let reply = app
        .post_raw(
            "/api/admin/tenants",
            Some(&super_admin()),
            "application/json",
            "{\"id\": ",
        )
        .await
        .expect(422);
    assert_eq!(reply.body["code"], "invalid_json");
    let reply = app
        .post_raw(
            "/api/admin/tenants",
            Some(&super_admin()),
            "application/json",
            r#"{"id": "a", "name": "A", "subdomain": "a", "plan": "gold"}"#,
        )
        .await
        .expect(422);
    assert!(
        reply.body["detail"].as_str().unwrap().contains("plan"),
        "{}",
        reply.text
    );
}
