//! The pages' session: the `__Host-` cookie, sign-in only from this site, the way back to the page after
//! an expired session, sign-out ended where the session is stored, and the stored sessions pruned.

use crate::helpers::{
    spawn_app_with, spawn_replica_with, super_admin, token, token_with, Store, TestApp, JWT_SECRET,
};
use crate::pages::csrf_of;
use crate::store_tests;
use chrono::{Duration, Utc};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use sha2::{Digest, Sha256};
use thanotopolis_billing::db::web_sessions::{self, WebSession};

store_tests!(
    the_session_cookie_is_host_prefixed_and_names_no_token,
    sign_in_needs_this_sites_origin_or_referer,
    an_expired_token_says_the_session_expired,
    an_expired_session_comes_back_to_the_page_after_sign_in,
    next_never_leaves_the_site,
    signing_out_ends_the_session_where_it_is_stored,
    sessions_expired_long_ago_are_pruned,
    a_session_answers_to_the_audience_and_issuer_set_now,
);

const EXPIRED: &str = "Your session expired. Sign in again.";

struct Reply {
    status: u16,
    location: String,
    set_cookie: Option<String>,
    text: String,
}

async fn reply(resp: reqwest::Response) -> Reply {
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (location, set_cookie) = (header(LOCATION).unwrap_or_default(), header(SET_COOKIE));
    Reply {
        status: resp.status().as_u16(),
        location,
        set_cookie,
        text: resp.text().await.unwrap(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// `POST /auth/session` from this site's sign-in page, with `next` when given.
async fn sign_in_form(app: &TestApp, jwt: &str, next: Option<&str>) -> Reply {
    let mut form = vec![("token", jwt)];
    form.extend(next.map(|n| ("next", n)));
    reply(
        client()
            .post(app.url("/auth/session"))
            .header("origin", &app.address)
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Signs in and returns the cookie to send back (`name=value`).
async fn signed_in(app: &TestApp, jwt: &str) -> String {
    let r = sign_in_form(app, jwt, None).await;
    assert_eq!(r.status, 303, "{}", r.text);
    r.set_cookie.unwrap().split(';').next().unwrap().to_owned()
}

async fn get(app: &TestApp, path: &str, cookie: &str) -> Reply {
    reply(
        client()
            .get(app.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// What the service stores of a cookie's id: an HMAC keyed by its JWT_SECRET.
fn hash(cookie_value: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(b"web-session\0");
    mac.update(cookie_value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn the_session_cookie_is_host_prefixed_and_names_no_token(app: TestApp) {
    app.add_tenant("acme").await;
    let jwt = token("acme", "org_admin");
    let r = sign_in_form(&app, &jwt, None).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let cookie = r.set_cookie.unwrap();
    let attrs: Vec<&str> = cookie.split("; ").collect();
    let (name, value) = attrs[0].split_once('=').unwrap();
    assert_eq!(name, "__Host-billing_session");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(attrs.contains(&attr), "{attr} missing: {cookie}");
    }
    assert!(
        !attrs.iter().any(|a| a.starts_with("Domain")),
        "a __Host- cookie has no Domain: {cookie}"
    );
    // The cookie outlives the session by a week, so that coming back after it expired says so.
    let max_age: i64 = attrs
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3600 + 7 * 86400..=3600 + 60 + 7 * 86400 + 5).contains(&max_age),
        "{max_age}"
    );
    // A random id, not the token; stored only as its hash.
    assert!(!value.contains('.') && !jwt.contains(value), "{value}");
    assert_eq!(value.len(), 43, "32 random bytes in base64url: {value}");
    assert!(web_sessions::find(&app.db, value).await.unwrap().is_none());
    let plain_sha256 = hex::encode(Sha256::digest(value.as_bytes()));
    assert!(web_sessions::find(&app.db, &plain_sha256)
        .await
        .unwrap()
        .is_none());
    let stored = web_sessions::find(&app.db, &hash(value))
        .await
        .unwrap()
        .expect("the session is stored under the id's hash");
    assert_eq!(
        (stored.tenant_id.as_str(), stored.role.as_str()),
        ("acme", "org_admin")
    );
    let page = get(&app, "/billing", attrs[0]).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Org acme"));
    // The old cookie name, or the token itself as the cookie, is not a session.
    for forged in [
        format!("billing_session={value}"),
        format!("__Host-billing_session={jwt}"),
    ] {
        let p = get(&app, "/billing", &forged).await;
        assert_eq!(p.status, 303, "{forged}");
        assert!(p.location.starts_with("/sign-in"), "{}", p.location);
    }
}

/// Login CSRF: another site must not sign a visitor in to an account of its choosing. A sign-in that says
/// nothing of where it comes from is refused too; nothing is stored for a refused one.
async fn sign_in_needs_this_sites_origin_or_referer(app: TestApp) {
    app.add_tenant("acme").await;
    let jwt = token("acme", "org_admin");
    let here = app.address.clone();
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[], "no Origin or Referer header"),
        (&[("origin", "https://evil.example")], "another site"),
        (&[("origin", "null")], "another site"),
        (
            &[("referer", "https://evil.example/billing")],
            "another site",
        ),
        // Origin decides when both are sent.
        (
            &[
                ("origin", "https://evil.example"),
                ("referer", &format!("{here}/sign-in")),
            ],
            "another site",
        ),
        (
            &[(
                "origin",
                &here.replace("127.0.0.1", "127.0.0.1.evil.example"),
            )],
            "another site",
        ),
    ];
    for (headers, why) in cases {
        for json in [false, true] {
            let mut req = client().post(app.url("/auth/session"));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req = if json {
                req.json(&serde_json::json!({"token": jwt}))
            } else {
                req.form(&[("token", jwt.as_str())])
            };
            let r = reply(req.send().await.unwrap()).await;
            assert_eq!(r.status, 403, "{headers:?} json={json}: {}", r.text);
            assert!(r.set_cookie.is_none(), "{headers:?}");
            if json {
                let body: serde_json::Value = serde_json::from_str(&r.text).unwrap();
                assert_eq!(body["code"], "forbidden", "{}", r.text);
                assert!(body["detail"].as_str().unwrap().contains(why), "{}", r.text);
            } else {
                assert!(r.text.contains("id=\"sign-in-error\""), "{}", r.text);
                assert!(r.text.contains(why), "{headers:?}: {}", r.text);
                assert!(r.text.contains("<label for=\"token\">"), "the form again");
            }
        }
    }
    assert_eq!(web_sessions::count(&app.db).await.unwrap(), 0);

    // From this site: by Origin, or by Referer alone (a browser that sends no Origin).
    let referer = format!("{here}/sign-in");
    for (name, value) in [("origin", here.as_str()), ("referer", referer.as_str())] {
        let r = reply(
            client()
                .post(app.url("/auth/session"))
                .header(name, value)
                .form(&[("token", jwt.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 303, "{name}: {}", r.text);
        assert_eq!(r.location, "/billing");
    }
    assert_eq!(web_sessions::count(&app.db).await.unwrap(), 2);
}

/// An expired token pasted on the sign-in page says the session expired, keeps where to come back to, and
/// opens nothing; the JSON sign-in says it in the contract's error.
async fn an_expired_token_says_the_session_expired(app: TestApp) {
    app.add_tenant("acme").await;
    let old = token_with("acme", "org_admin", Utc::now().timestamp() - 3600);
    let r = sign_in_form(&app, &old, Some("/billing?tab=invoices")).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.set_cookie.is_none());
    assert!(r.text.contains("id=\"session-expired\""), "{}", r.text);
    assert!(r.text.contains(EXPIRED), "{}", r.text);
    assert!(r.text.contains("get a new one from the platform"));
    assert!(
        r.text
            .contains(r#"<input type="hidden" name="next" value="/billing?tab=invoices">"#),
        "the way back is kept for the next try: {}",
        r.text
    );
    let r = reply(
        client()
            .post(app.url("/auth/session"))
            .header("origin", &app.address)
            .json(&serde_json::json!({"token": old}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    let body: serde_json::Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(body["code"], "not_authenticated");
    assert!(
        body["detail"].as_str().unwrap().starts_with(EXPIRED),
        "{}",
        r.text
    );
    assert_eq!(web_sessions::count(&app.db).await.unwrap(), 0);
}

/// A session that expires while a page is open: the next page, or the next form, goes to the sign-in page
/// saying so, and signing in again comes back to that page.
async fn an_expired_session_comes_back_to_the_page_after_sign_in(app: TestApp) {
    app.add_tenant("acme").await;
    // A token the API still accepts for 3 more seconds (60 s of leeway after `exp`): so is the session.
    let short = token_with("platform", "super_admin", Utc::now().timestamp() - 57);
    let cookie = signed_in(&app, &short).await;
    let page = "/billing?tenant_id=acme";
    let open = get(&app, page, &cookie).await;
    assert_eq!(open.status, 200, "{}", open.text);
    let csrf = csrf_of(&open.text);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;

    let r = get(&app, page, &cookie).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location,
        "/sign-in?expired=1&next=%2Fbilling%3Ftenant_id%3Dacme"
    );
    assert!(r.set_cookie.unwrap().contains("Max-Age=0"), "dropped");
    // A form sent from the page comes back to the page, not to the form's action.
    let r = reply(
        client()
            .post(app.url("/auth/logout"))
            .header("cookie", &cookie)
            .header("origin", &app.address)
            .header("referer", app.url(page))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location,
        "/sign-in?expired=1&next=%2Fbilling%3Ftenant_id%3Dacme"
    );

    let sign_in = reply(client().get(app.url(&r.location)).send().await.unwrap()).await;
    assert_eq!(sign_in.status, 200);
    assert!(sign_in.text.contains("id=\"session-expired\""));
    assert!(sign_in.text.contains(EXPIRED), "{}", sign_in.text);
    assert!(
        sign_in
            .text
            .contains(r#"<input type="hidden" name="next" value="/billing?tenant_id=acme">"#),
        "{}",
        sign_in.text
    );
    // Plain /sign-in says nothing of the kind.
    let plain = reply(client().get(app.url("/sign-in")).send().await.unwrap()).await;
    assert!(!plain.text.contains(EXPIRED));
    assert!(!plain.text.contains("name=\"next\""));

    let again = sign_in_form(&app, &super_admin(), Some(page)).await;
    assert_eq!(again.status, 303, "{}", again.text);
    assert_eq!(again.location, page, "back where the person was");
    let cookie = again
        .set_cookie
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(get(&app, page, &cookie).await.status, 200);
}

/// `next` is only ever a path on this site: anything a browser could read as another site is ignored and
/// the person lands on their home page.
async fn next_never_leaves_the_site(app: TestApp) {
    app.add_tenant("acme").await;
    let jwt = token("acme", "org_admin");
    for bad in [
        "//evil.example",
        "//evil.example/billing",
        "https://evil.example/billing",
        "http:evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/%0a/evil.example\n",
        "javascript:alert(1)",
        "billing",
        "/auth/logout",
    ] {
        let r = sign_in_form(&app, &jwt, Some(bad)).await;
        assert_eq!(r.status, 303, "{bad:?}: {}", r.text);
        assert_eq!(r.location, "/billing", "{bad:?}");
        let page = reply(
            client()
                .get(app.url("/sign-in"))
                .query(&[("next", bad), ("expired", "1")])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, 200);
        assert!(!page.text.contains("name=\"next\""), "{bad:?}");
    }
    for good in [
        "/billing?tenant_id=acme",
        "/billing/cancel",
        "/admin/billing",
    ] {
        let r = sign_in_form(&app, &jwt, Some(good)).await;
        assert_eq!(r.location, good);
    }
}

/// Signing out deletes the session: its cookie, replayed afterwards, opens no page and sends no form.
async fn signing_out_ends_the_session_where_it_is_stored(app: TestApp) {
    app.add_tenant("acme").await;
    let jwt = token("acme", "org_admin");
    let cookie = signed_in(&app, &jwt).await;
    let page = get(&app, "/billing", &cookie).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.text);
    let sign_out = |cookie: String, csrf: String| {
        let app_url = app.url("/auth/logout");
        let origin = app.address.clone();
        async move {
            reply(
                client()
                    .post(app_url)
                    .header("cookie", cookie)
                    .header("origin", origin)
                    .form(&[("csrf", csrf)])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let out = sign_out(cookie.clone(), csrf.clone()).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location, "/sign-in");
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(web_sessions::count(&app.db).await.unwrap(), 0);

    // The same cookie, replayed: no page, no form, and no "expired" (it was ended, not expired).
    let replay = get(&app, "/billing", &cookie).await;
    assert_eq!(replay.status, 303);
    assert_eq!(replay.location, "/sign-in?next=%2Fbilling");
    assert!(!replay.text.contains("Org acme"));
    let cancel = reply(
        client()
            .post(app.url("/billing/cancel"))
            .header("cookie", &cookie)
            .header("origin", &app.address)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cancel.status, 303);
    assert!(
        cancel.location.starts_with("/sign-in"),
        "{}",
        cancel.location
    );

    // Signing in again while holding a cookie ends the session that cookie named.
    let first = signed_in(&app, &jwt).await;
    let r = reply(
        client()
            .post(app.url("/auth/session"))
            .header("origin", &app.address)
            .header("cookie", &first)
            .form(&[("token", jwt.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 303);
    let second = r.set_cookie.unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(get(&app, "/billing", &first).await.status, 303);
    assert_eq!(get(&app, "/billing", &second).await.status, 200);
    assert_eq!(web_sessions::count(&app.db).await.unwrap(), 1);
}

/// Each sign-in prunes the sessions that expired over a week ago (their cookies are gone from browsers
/// by then), so the table cannot grow without bound; one expired more recently is kept, so that its
/// cookie still says "expired".
async fn sessions_expired_long_ago_are_pruned(app: TestApp) {
    app.add_tenant("acme").await;
    let stored = |days_ago: i64| WebSession {
        sub: "user-1".into(),
        tenant_id: "acme".into(),
        role: "org_admin".into(),
        email: None,
        token_exp: (Utc::now() - Duration::days(days_ago)).timestamp() - 60,
        audience: vec![],
        issuer: None,
        expires_at: Utc::now() - Duration::days(days_ago),
    };
    web_sessions::create(&app.db, &hash("long-ago"), &stored(8))
        .await
        .unwrap();
    web_sessions::create(&app.db, &hash("yesterday"), &stored(1))
        .await
        .unwrap();
    assert_eq!(web_sessions::count(&app.db).await.unwrap(), 2);

    signed_in(&app, &token("acme", "org_admin")).await;
    assert!(web_sessions::find(&app.db, &hash("long-ago"))
        .await
        .unwrap()
        .is_none());
    assert!(web_sessions::find(&app.db, &hash("yesterday"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(web_sessions::count(&app.db).await.unwrap(), 2);

    let r = get(&app, "/billing", "__Host-billing_session=yesterday").await;
    assert_eq!(r.location, "/sign-in?expired=1&next=%2Fbilling");
    let r = get(&app, "/billing", "__Host-billing_session=long-ago").await;
    assert_eq!(r.location, "/sign-in?next=%2Fbilling");
}

/// A session keeps whom its token was minted for and answers to `JWT_AUDIENCE` / `JWT_ISSUER` as they
/// are set now, as the token would: a replica configured with them (on the same database) refuses the
/// session of a token without them, and keeps the one of a token that carries them.
async fn a_session_answers_to_the_audience_and_issuer_set_now(app: TestApp) {
    app.add_tenant("acme").await;
    let plain = signed_in(&app, &token("acme", "org_admin")).await;
    let for_billing = signed_in(
        &app,
        &hs256(
            &serde_json::json!({"sub": "u", "tenant_id": "acme", "role": "org_admin",
            "exp": Utc::now().timestamp() + 600, "aud": ["chat", "billing"],
            "iss": "https://platform.example.com"}),
        ),
    )
    .await;
    let strict = spawn_replica_with(&app.database_url, &app.sim, |v| {
        v.insert("JWT_AUDIENCE".into(), "billing".into());
        v.insert("JWT_ISSUER".into(), "https://platform.example.com".into());
    })
    .await;
    for cookie in [&plain, &for_billing] {
        assert_eq!(get(&app, "/billing", cookie).await.status, 200);
    }
    let refused = get(&strict, "/billing", &plain).await;
    assert_eq!(refused.status, 303);
    assert_eq!(refused.location, "/sign-in?next=%2Fbilling");
    assert!(refused.set_cookie.unwrap().contains("Max-Age=0"));
    let kept = get(&strict, "/billing", &for_billing).await;
    assert_eq!(kept.status, 200);
    assert!(kept.text.contains("Org acme"));
}

/// A token signed with the platform's secret, with any claims.
fn hs256(claims: &serde_json::Value) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// With `JWT_AUDIENCE` and `JWT_ISSUER` set, a platform token minted for another purpose opens no page
/// session either; one minted for billing does.
#[tokio::test]
async fn audience_and_issuer_hold_for_the_pages() {
    for store in [Store::Sqlite, Store::Postgres] {
        let app = spawn_app_with(store, |v| {
            v.insert("JWT_AUDIENCE".into(), "billing".into());
            v.insert("JWT_ISSUER".into(), "https://platform.example.com".into());
        })
        .await;
        let exp = Utc::now().timestamp() + 600;
        let with = |aud: serde_json::Value, iss: &str| {
            hs256(
                &serde_json::json!({"sub": "u", "tenant_id": "acme", "role": "org_admin",
                "exp": exp, "aud": aud, "iss": iss}),
            )
        };
        let platform = hs256(&serde_json::json!({"sub": "p", "tenant_id": "platform",
            "role": "super_admin", "exp": exp, "aud": "billing", "iss": "https://platform.example.com"}));
        app.post(
            "/api/admin/tenants",
            Some(&platform),
            &serde_json::json!({"id": "acme", "name": "Org acme", "subdomain": "acme"}),
        )
        .await
        .expect(201);
        for foreign in [
            with("chat".into(), "https://platform.example.com"),
            with(serde_json::Value::Null, "https://platform.example.com"),
            with("billing".into(), "https://elsewhere.example.com"),
            token("acme", "org_admin"),
        ] {
            let r = sign_in_form(&app, &foreign, None).await;
            assert_eq!(r.status, 401, "{store:?}: {}", r.text);
            assert!(r.set_cookie.is_none());
            assert!(r.text.contains("issued for another service"), "{}", r.text);
        }
        assert_eq!(web_sessions::count(&app.db).await.unwrap(), 0);
        let cookie = signed_in(
            &app,
            &with("billing".into(), "https://platform.example.com"),
        )
        .await;
        let page = get(&app, "/billing", &cookie).await;
        assert_eq!(page.status, 200, "{store:?}");
        assert!(page.text.contains("Org acme"));

        // The `token` command, configured the same way, mints a token that carries them.
        let dir = crate::helpers::TempDir::new();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
            .args(["token", "--tenant", "acme", "--role", "org_admin"])
            .current_dir(&dir.path)
            .env("JWT_SECRET", JWT_SECRET)
            .env("JWT_AUDIENCE", "billing")
            .env("JWT_ISSUER", "https://platform.example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let minted = String::from_utf8(out.stdout).unwrap();
        let cookie = signed_in(&app, minted.trim()).await;
        assert_eq!(get(&app, "/billing", &cookie).await.status, 200);
    }
}
