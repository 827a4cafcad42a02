//! Who may call what: 401 for a missing or bad token, 403 for a valid token without the right.

use crate::helpers::{super_admin, token, token_with, TestApp, JWT_SECRET};
use crate::store_tests;
use base64::Engine;

store_tests!(
    tenant_routes_need_a_valid_token,
    only_super_admin_manages_tenants,
    tokens_other_than_hs256_are_refused,
    expired_tokens_get_401_with_leeway,
    unknown_roles_get_403
);

async fn tenant_routes_need_a_valid_token(app: TestApp) {
    let reply = app.get("/api/admin/tenants", None).await.expect(401);
    assert_eq!(reply.body["code"], "not_authenticated");
    assert!(reply.body["detail"].as_str().unwrap().contains("Bearer"));
    app.get("/api/admin/tenants", Some("not-a-jwt"))
        .await
        .expect(401);
    let forged = {
        let t = token("acme", "super_admin");
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[2] = "AAAA";
        parts.join(".")
    };
    app.get("/api/admin/tenants", Some(&forged))
        .await
        .expect(401);
}

async fn only_super_admin_manages_tenants(app: TestApp) {
    for role in ["member", "user", "org_admin", "admin", "service"] {
        let reply = app
            .get("/api/admin/tenants", Some(&token("acme", role)))
            .await;
        assert_eq!(
            reply.status, 403,
            "role {role} must be refused: {}",
            reply.text
        );
        assert_eq!(reply.body["code"], "forbidden");
        let reply = app
            .post(
                "/api/admin/tenants",
                Some(&token("acme", role)),
                &serde_json::json!({"id": "x", "name": "X", "subdomain": "x"}),
            )
            .await;
        assert_eq!(reply.status, 403, "role {role} must not add tenants");
    }
    app.get("/api/admin/tenants", Some(&super_admin()))
        .await
        .expect(200);
}

async fn tokens_other_than_hs256_are_refused(app: TestApp) {
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = serde_json::json!({"sub": "u", "tenant_id": "t", "role": "super_admin",
        "exp": chrono::Utc::now().timestamp() + 600});
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    app.get("/api/admin/tenants", Some(&none)).await.expect(401);
    // An HS512 token signed with the right secret is still not HS256.
    use hmac::{Hmac, Mac};
    let head = b64(&serde_json::json!({"alg": "HS512", "typ": "JWT"}));
    let signing_input = format!("{head}.{}", b64(&claims));
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    app.get(
        "/api/admin/tenants",
        Some(&format!("{signing_input}.{sig}")),
    )
    .await
    .expect(401);
    // Without exp the token is refused.
    let no_exp = serde_json::json!({"sub": "u", "tenant_id": "t", "role": "super_admin"});
    let head = b64(&serde_json::json!({"alg": "HS256", "typ": "JWT"}));
    let input = format!("{head}.{}", b64(&no_exp));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    app.get("/api/admin/tenants", Some(&format!("{input}.{sig}")))
        .await
        .expect(401);
}

async fn expired_tokens_get_401_with_leeway(app: TestApp) {
    let now = chrono::Utc::now().timestamp();
    // 30 s past expiry is inside the 60 s leeway; 120 s is not.
    let recent = token_with("platform", "super_admin", now - 30);
    app.get("/api/admin/tenants", Some(&recent))
        .await
        .expect(200);
    let old = token_with("platform", "super_admin", now - 120);
    let reply = app.get("/api/admin/tenants", Some(&old)).await.expect(401);
    assert!(reply.body["detail"].as_str().unwrap().contains("expired"));
}

async fn unknown_roles_get_403(app: TestApp) {
    app.get("/api/admin/tenants", Some(&token("acme", "janitor")))
        .await
        .expect(403);
}

/// A token signed with the platform's secret, with any claims.
pub(crate) fn hs256(claims: &serde_json::Value) -> String {
    use hmac::{Hmac, Mac};
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let input = format!(
        "{}.{}",
        b64(&serde_json::json!({"alg": "HS256", "typ": "JWT"})),
        b64(claims)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

/// With `JWT_AUDIENCE` and `JWT_ISSUER` set, a platform token minted for another purpose is refused.
#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Store::Sqlite, |v| {
        v.insert("JWT_AUDIENCE".into(), "billing".into());
        v.insert("JWT_ISSUER".into(), "https://platform.example.com".into());
    })
    .await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let with = |aud: serde_json::Value, iss: serde_json::Value| {
        hs256(
            &serde_json::json!({"sub": "u", "tenant_id": "t", "role": "super_admin",
            "exp": exp, "aud": aud, "iss": iss}),
        )
    };
    let iss = serde_json::json!("https://platform.example.com");
    for ok in [
        with("billing".into(), iss.clone()),
        with(serde_json::json!(["chat", "billing"]), iss.clone()),
    ] {
        app.get("/api/admin/tenants", Some(&ok)).await.expect(200);
    }
    for bad in [
        with("chat".into(), iss.clone()),
        with(serde_json::Value::Null, iss.clone()),
        with("billing".into(), "https://elsewhere.example.com".into()),
        with("billing".into(), serde_json::Value::Null),
    ] {
        let r = app.get("/api/admin/tenants", Some(&bad)).await.expect(401);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("not for this service"),
            "{}",
            r.text
        );
    }
    // Unset (the default): not checked.
    let plain = crate::helpers::spawn_app(crate::helpers::Store::Sqlite).await;
    plain
        .get(
            "/api/admin/tenants",
            Some(&with("chat".into(), serde_json::Value::Null)),
        )
        .await
        .expect(200);
}
