//! The web pages over HTTP: sign-in and its cookie, tenant isolation, CSRF, security headers.

use crate::helpers::{super_admin, token, TestApp};
use crate::store_tests;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

store_tests!(
    pages_need_sign_in_and_send_security_headers,
    sign_in_sets_a_safe_cookie_and_redirects_by_role,
    a_tenant_never_sees_another_tenants_page,
    forms_without_csrf_or_from_elsewhere_are_refused,
    subscribing_from_the_page_goes_to_checkout,
    members_see_billing_but_cannot_act,
    dev_sign_in_is_off_by_default,
    usage_without_a_subscription_waits_for_one,
);

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

pub(crate) struct Page {
    pub status: u16,
    headers: HeaderMap,
    pub text: String,
}

async fn page(resp: reqwest::Response) -> Page {
    Page {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

pub(crate) fn location(p: &Page) -> &str {
    p.headers
        .get(LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// Signs in through `POST /auth/session` and returns the session cookie (`name=value`).
pub(crate) async fn sign_in(app: &TestApp, jwt: &str) -> String {
    let p = page(
        client()
            .post(app.url("/auth/session"))
            .header("origin", &app.address)
            .form(&[("token", jwt)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.text);
    let cookie = p.headers.get(SET_COOKIE).unwrap().to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// A page fetched with the session cookie, redirects not followed.
pub(crate) async fn get(app: &TestApp, path: &str, cookie: &str) -> Page {
    page(
        client()
            .get(app.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A form posted from this site with the session cookie.
pub(crate) async fn post(app: &TestApp, path: &str, cookie: &str, form: &[(&str, &str)]) -> Page {
    page(
        client()
            .post(app.url(path))
            .header("cookie", cookie)
            .header("origin", &app.address)
            .form(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The CSRF token a page's forms carry.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

fn assert_security_headers(p: &Page) {
    let h = |name: &str| p.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let csp = h("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script is allowed: {csp}");
    assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(h("referrer-policy").is_some());
}

async fn pages_need_sign_in_and_send_security_headers(app: TestApp) {
    for path in ["/billing", "/admin/billing", "/billing/cancel"] {
        let p = page(client().get(app.url(path)).send().await.unwrap()).await;
        assert_eq!(p.status, 303, "{path}");
        assert_eq!(
            location(&p),
            format!("/sign-in?next=%2F{}", &path[1..].replace('/', "%2F")),
            "{path}"
        );
    }
    let p = page(client().get(app.url("/sign-in")).send().await.unwrap()).await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("<label for=\"token\">"));
    assert_security_headers(&p);
    // A bad or expired cookie is the same as none, and is cleared.
    let p = get(&app, "/billing", "__Host-billing_session=not-a-session").await;
    assert_eq!(p.status, 303);
    assert!(p
        .headers
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

async fn sign_in_sets_a_safe_cookie_and_redirects_by_role(app: TestApp) {
    app.add_tenant("acme").await;
    let jwt = token("acme", "org_admin");
    let p = page(
        client()
            .post(app.url("/auth/session"))
            .header("origin", &app.address)
            .form(&[("token", jwt.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p.status, 303);
    assert_eq!(location(&p), "/billing");
    let cookie = p.headers.get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cookie.starts_with("__Host-billing_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(cookie.contains("; Secure"), "__Host- requires it: {cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert!(!location(&p).contains(&jwt));

    // JSON works too; a super admin lands on the admin page.
    let p = page(
        client()
            .post(app.url("/auth/session"))
            .header("origin", &app.address)
            .json(&serde_json::json!({"token": super_admin()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p.status, 303);
    assert_eq!(location(&p), "/admin/billing");

    // A bad token: no cookie, an error on the sign-in page.
    for bad in ["garbage", &token("acme", "service")] {
        let p = page(
            client()
                .post(app.url("/auth/session"))
                .header("origin", &app.address)
                .form(&[("token", bad)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(p.status == 401 || p.status == 403, "{}", p.status);
        assert!(p.headers.get(SET_COOKIE).is_none());
        assert!(p.text.contains("id=\"sign-in-error\""));
    }

    // Signed in: the page, with the sign-out form that ends the session.
    let cookie = sign_in(&app, &jwt).await;
    let billing = get(&app, "/billing", &cookie).await;
    assert_eq!(billing.status, 200);
    assert_security_headers(&billing);
    assert!(billing.text.contains("Org acme"));
    assert!(
        !billing.text.contains(&jwt),
        "the token never appears in a page"
    );
    let out = post(
        &app,
        "/auth/logout",
        &cookie,
        &[("csrf", &csrf_of(&billing.text))],
    )
    .await;
    assert_eq!(out.status, 303);
    assert_eq!(location(&out), "/sign-in");
    assert!(out
        .headers
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

async fn a_tenant_never_sees_another_tenants_page(app: TestApp) {
    app.add_tenant("acme").await;
    app.add_tenant("globex").await;
    let cookie = sign_in(&app, &token("acme", "org_admin")).await;
    let p = get(&app, "/billing?tenant_id=globex", &cookie).await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("Org acme"));
    assert!(!p.text.contains("Org globex"));
    // Forms aimed at another tenant act on the caller's own (which has nothing to cancel).
    let csrf = csrf_of(&p.text);
    let c = post(
        &app,
        "/billing/cancel?tenant_id=globex",
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(c.status, 404, "{}", c.text);
    assert!(c.text.contains("Org acme"));
    // The admin page is for super admins only.
    assert_eq!(get(&app, "/admin/billing", &cookie).await.status, 403);
    // A super admin may open any tenant's page.
    let admin = sign_in(&app, &super_admin()).await;
    let p = get(&app, "/billing?tenant_id=globex", &admin).await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("Org globex"));
    let p = get(&app, "/admin/billing", &admin).await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("Org acme") && p.text.contains("Org globex"));
    assert!(p.text.contains("id=\"run-period\""));
    assert!(p.text.contains("id=\"run-dry-run\""));
    assert!(p.text.contains("id=\"run-start\""));
}

async fn forms_without_csrf_or_from_elsewhere_are_refused(app: TestApp) {
    app.add_tenant("acme").await;
    let admin = sign_in(&app, &super_admin()).await;
    let p = get(&app, "/admin/billing", &admin).await;
    let csrf = csrf_of(&p.text);
    let path = "/admin/billing/tenants/acme/demo";
    let refused = post(&app, path, &admin, &[("is_demo", "true")]).await;
    assert_eq!(refused.status, 403);
    // The way back is to the page a super admin works from.
    assert!(
        refused
            .text
            .contains(r#"<a href="/admin/billing" id="error-back">Back to the admin page</a>"#),
        "{}",
        refused.text
    );
    assert_eq!(
        post(&app, path, &admin, &[("is_demo", "true"), ("csrf", "00ff")])
            .await
            .status,
        403
    );
    // Another session's token does not fit this one.
    let other = sign_in(&app, &token("platform2", "super_admin")).await;
    let other_csrf = csrf_of(&get(&app, "/admin/billing", &other).await.text);
    assert_eq!(
        post(
            &app,
            path,
            &admin,
            &[("is_demo", "true"), ("csrf", &other_csrf)]
        )
        .await
        .status,
        403
    );
    // The right token from another site.
    let cross = page(
        client()
            .post(app.url(path))
            .header("cookie", &admin)
            .header("origin", "https://evil.example")
            .form(&[("is_demo", "true"), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cross.status, 403);
    let tenant = thanotopolis_billing::db::tenants::get(
        &app.db,
        &thanotopolis_billing::domain::TenantId::parse("acme").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!tenant.is_demo, "nothing changed");

    // With its token, from this site: done, audited, and the tenant sees the banner.
    let ok = post(&app, path, &admin, &[("is_demo", "true"), ("csrf", &csrf)]).await;
    assert_eq!(ok.status, 303);
    assert_eq!(location(&ok), "/admin/billing?done=demo_on&tenant=acme");
    let p = get(&app, "/admin/billing?done=demo_on&tenant=acme", &admin).await;
    assert!(p.text.contains("tenant.demo_on"), "audited");
    // The notice names the organization.
    assert!(
        p.text.contains("Org acme is now a demo account"),
        "{}",
        p.text
    );
    let member = sign_in(&app, &token("acme", "member")).await;
    let p = get(&app, "/billing", &member).await;
    assert!(p.text.contains("id=\"demo-banner\""));
    assert!(p
        .text
        .contains("This is a demo account and is exempt from billing charges."));
}

async fn subscribing_from_the_page_goes_to_checkout(app: TestApp) {
    app.add_tenant("acme").await;
    let cookie = sign_in(&app, &token("acme", "org_admin")).await;
    let p = get(&app, "/billing", &cookie).await;
    assert!(p.text.contains("$299.00"));
    assert!(p.text.contains("id=\"subscribe\""));
    let csrf = csrf_of(&p.text);
    assert_eq!(
        post(&app, "/billing/checkout", &cookie, &[("trial_days", "14")])
            .await
            .status,
        403,
        "no CSRF token"
    );
    let r = post(
        &app,
        "/billing/checkout",
        &cookie,
        &[("trial_days", "14"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let to = location(&r);
    assert!(to.starts_with(&app.sim), "{to}");
    assert!(!to.contains("eyJ"), "no token in a redirect: {to}");
    let bad = post(
        &app,
        "/billing/checkout",
        &cookie,
        &[("trial_days", "soon"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("id=\"trial-days-error\""));
}

async fn members_see_billing_but_cannot_act(app: TestApp) {
    app.add_tenant("acme").await;
    app.subscribe("acme", None, "4242424242424242").await;
    let admin = sign_in(&app, &token("acme", "org_admin")).await;
    let p = get(&app, "/billing", &admin).await;
    assert!(p.text.contains("id=\"cancel-subscription\""), "{}", p.text);
    assert!(p.text.contains("id=\"manage-payment\""));

    let member = sign_in(&app, &token("acme", "member")).await;
    let p = get(&app, "/billing", &member).await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("id=\"subscription-status\""));
    assert!(!p.text.contains("id=\"cancel-subscription\""));
    assert!(!p.text.contains("id=\"manage-payment\""));
    assert!(p.text.contains("id=\"member-note\""));
    let csrf = csrf_of(&p.text);
    assert_eq!(
        post(&app, "/billing/cancel", &member, &[("csrf", &csrf)])
            .await
            .status,
        403
    );
    assert_eq!(get(&app, "/billing/cancel", &member).await.status, 403);
    assert!(
        !app.live_subscription("acme")
            .await
            .unwrap()
            .cancel_at_period_end
    );

    // The admin cancels through the confirmation page, then reactivates.
    let confirm = get(&app, "/billing/cancel", &admin).await;
    assert!(confirm.text.contains("id=\"confirm-cancel\""));
    let csrf = csrf_of(&confirm.text);
    let done = post(&app, "/billing/cancel", &admin, &[("csrf", &csrf)]).await;
    assert_eq!(location(&done), "/billing?done=canceled");
    let p = get(&app, "/billing?done=canceled", &admin).await;
    assert!(p.text.contains("id=\"cancel-notice\""));
    let done = post(&app, "/billing/reactivate", &admin, &[("csrf", &csrf)]).await;
    assert_eq!(location(&done), "/billing?done=reactivated");
    assert!(
        !app.live_subscription("acme")
            .await
            .unwrap()
            .cancel_at_period_end
    );
}

async fn dev_sign_in_is_off_by_default(app: TestApp) {
    assert_eq!(
        page(client().get(app.url("/dev/sign-in")).send().await.unwrap())
            .await
            .status,
        404
    );
    let p = page(
        client()
            .post(app.url("/dev/sign-in"))
            .form(&[("tenant_id", "acme"), ("role", "super_admin")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(p.status, 404);
    assert!(p.headers.get(SET_COOKIE).is_none());
}

/// The run skips a tenant without a subscription and bills its usage once it subscribes: the page says
/// so instead of presenting it as due on the 1st. A subscribed tenant's usage is due on the 1st; a demo
/// account keeps its demo message.
async fn usage_without_a_subscription_waits_for_one(app: TestApp) {
    for t in ["solo", "acme", "demo"] {
        app.add_tenant(t).await;
    }
    app.subscribe("acme", None, "4242424242424242").await;
    app.post(
        "/api/billing/set-demo-status/demo?is_demo=true",
        Some(&super_admin()),
        &serde_json::json!({}),
    )
    .await
    .expect(200);
    for t in ["solo", "acme", "demo"] {
        let events = serde_json::json!({"events": [
            {"event_id": format!("{t}-stt"), "tenant_id": t, "type": "stt_words", "quantity": 1_000},
            {"event_id": format!("{t}-call"), "tenant_id": t, "type": "phone_calls", "quantity": 1},
        ]});
        app.post(
            "/api/usage/events",
            Some(&token("platform", "service")),
            &events,
        )
        .await
        .expect(200);
    }

    for role in ["org_admin", "member"] {
        let cookie = sign_in(&app, &token("solo", role)).await;
        let p = get(&app, "/billing", &cookie).await;
        assert_eq!(p.status, 200);
        assert!(
            p.text.contains("billed once you subscribe"),
            "{role}: {}",
            p.text
        );
        assert!(
            p.text.contains("Usage waiting for a subscription"),
            "{role}"
        );
        assert!(
            !p.text.contains("Billed on the first of next month"),
            "{role}: not presented as due on the 1st"
        );
        // The amount is still shown: it waits, it is not dropped.
        assert!(
            p.text.contains("id=\"upcoming-total\">$2.00<"),
            "{role}: {}",
            p.text
        );
    }

    let cookie = sign_in(&app, &token("acme", "org_admin")).await;
    let p = get(&app, "/billing", &cookie).await;
    assert!(p.text.contains("Billed on the first of next month"));
    assert!(p.text.contains("Upcoming charges"));
    assert!(!p.text.contains("billed once you subscribe"));

    let cookie = sign_in(&app, &token("demo", "org_admin")).await;
    let p = get(&app, "/billing", &cookie).await;
    assert!(p.text.contains("id=\"demo-banner\""));
    assert!(p
        .text
        .contains("This is a demo account and is exempt from billing charges."));
    assert!(!p.text.contains("billed once you subscribe"));
    assert!(!p.text.contains("Billed on the first of next month"));
}
