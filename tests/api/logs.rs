//! No secret and no token ever reaches the logs: the real binary runs a whole flow at debug level and its
//! output is searched for every secret it was given and every token it saw.

use crate::helpers::{
    spawn_process_with, super_admin, token, token_with, JWT_SECRET, WEBHOOK_SECRET,
};
use crate::usage::ev_at;
use chrono::{Duration, Utc};
use serde_json::json;
use thanotopolis_billing::domain::BillingPeriod;

const STRIPE_KEY: &str = "sk_test_api_tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_flow_logs_no_secret_and_no_token() {
    let (app, service) = spawn_process_with(|vars| {
        vars.insert("RUST_LOG".into(), "debug".into());
        // A few extra origins and a limit, so those paths run too.
        vars.insert(
            "CORS_ALLOWED_ORIGINS".into(),
            "https://app.example.com".into(),
        );
        vars.insert("USAGE_EVENTS_PER_SECOND_PER_TOKEN".into(), "1000".into());
    })
    .await;
    let mut tokens = vec![super_admin()];

    // Tenants, checkout through the simulator, its webhooks.
    app.add_tenant("acme").await;
    app.add_tenant("globex").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let admin = token("acme", "org_admin");
    tokens.push(admin.clone());
    app.get("/api/billing/dashboard", Some(&admin))
        .await
        .expect(200);
    app.get(
        "/api/billing/customer-portal?return_url=https://app.example.com/billing",
        Some(&admin),
    )
    .await
    .expect(200);

    // Usage, now and in the closed period, then the run for that period.
    let service_token = token("platform", "service");
    tokens.push(service_token.clone());
    let last_month = BillingPeriod::containing(Utc::now(), chrono_tz::UTC).prev();
    let at = last_month.bounds(chrono_tz::UTC).0 + Duration::days(3);
    let events = vec![
        ev_at("e1", "acme", "stt_words", 1200, at),
        ev_at("e2", "acme", "phone_calls", 1, at),
        ev_at("e3", "acme", "tts_words", 40, Utc::now()),
    ];
    app.post(
        "/api/usage/events",
        Some(&service_token),
        &json!({ "events": events }),
    )
    .await
    .expect(200);
    let report = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": last_month.to_string()}),
        )
        .await
        .expect(200);
    assert_eq!(
        report.body["totals"]["tenants_billed"], 1,
        "{}",
        report.text
    );
    app.settle().await;
    app.get("/api/billing/invoices", Some(&admin))
        .await
        .expect(200);

    // Callers that get it wrong: their tokens must not be echoed into the log either.
    let expired = token_with("acme", "admin", Utc::now().timestamp() - 3600);
    let forged = thanotopolis_billing::auth::jwt::sign(
        &thanotopolis_billing::auth::Claims {
            sub: "mallory".into(),
            tenant_id: "acme".into(),
            role: "super_admin".into(),
            exp: Utc::now().timestamp() + 3600,
            email: None,
        },
        b"not-the-secret",
    );
    for bad in [&expired, &forged] {
        app.get("/api/billing/dashboard", Some(bad))
            .await
            .expect(401);
        tokens.push(bad.clone());
    }
    let member = token("globex", "member");
    tokens.push(member.clone());
    app.post(
        "/api/usage/events",
        Some(&member),
        &json!({"events": [ev_at("x", "globex", "stt_words", 1, Utc::now())]}),
    )
    .await
    .expect(403);
    let body = r#"{"id":"evt_forged","type":"invoice.paid","created":1,"data":{"object":{}}}"#;
    let signature = thanotopolis_billing::stripe::webhook::sign(
        body.as_bytes(),
        "whsec_wrong_secret",
        Utc::now().timestamp(),
    );
    let resp = app
        .client
        .post(app.url("/api/billing/webhook"))
        .header("stripe-signature", &signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The pages: sign in with a token (the cookie then carries it), read the page, sign out with the
    // form's CSRF token; a forged token is refused.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_ins = [
        (&admin, "/billing", 303),
        (&super_admin(), "/admin/billing", 303),
        (&forged, "", 401),
    ];
    for (who, home, status) in sign_ins {
        let resp = no_redirects
            .post(app.url("/auth/session"))
            .header("origin", app.url(""))
            .form(&[("token", who.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "sign-in to {home:?}");
        if status != 303 {
            continue;
        }
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let page = no_redirects
            .get(app.url(home))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{home}");
        let html = page.text().await.unwrap();
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page has a form with a CSRF token");
        let out = no_redirects
            .post(app.url("/auth/logout"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 303, "sign-out");
    }

    let log = service.stop().await;
    // The log is real: the flow above is in it.
    assert!(log.contains("/api/usage/events"), "no request log:\n{log}");
    assert!(log.contains("webhook"), "no webhook log:\n{log}");

    let mut needles: Vec<(&str, String)> = vec![
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("STRIPE_SECRET_KEY", STRIPE_KEY.to_owned()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("a webhook secret", "whsec_".to_owned()),
        ("a Stripe key", "sk_test_".to_owned()),
        ("a JWT", "eyJ".to_owned()),
    ];
    for t in &tokens {
        needles.push(("a bearer token", t.clone()));
        // The signature alone is as good as the token for anyone who has the rest.
        needles.push((
            "a token signature",
            t.rsplit('.').next().unwrap().to_owned(),
        ));
    }
    for (what, needle) in needles {
        if let Some(at) = log.find(&needle) {
            let line = log[..at].rsplit('\n').next().unwrap_or("");
            panic!("{what} leaked into the service log, in the line starting: {line:.200}");
        }
    }
}
