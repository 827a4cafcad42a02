//! `platform import` against the simulator holding the platform's customers and subscriptions: dry (nothing
//! changes, every conflict reported), applied, and applied again (nothing twice).

use crate::helpers::{spawn_app, super_admin, Store, TestApp};
use crate::platform_db::{follower_state, PlatformDb};
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use thanotopolis_billing::platform::import::{self, ImportReport};
use thanotopolis_billing::platform::Source;

/// A Stripe customer the platform made (stripe_service.py:54-60 tags it with `tenant_id`; older ones
/// may lack it), with a live subscription when `subscribed`.
pub async fn customer(
    app: &TestApp,
    price: &str,
    tenant: Option<&str>,
    subscribed: bool,
) -> String {
    let mut form = vec![("name", "Platform org".to_owned())];
    if let Some(t) = tenant {
        form.push(("metadata[tenant_id]", t.to_owned()));
        form.push(("metadata[platform]", "thanotopolis".to_owned()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let id = app.sim_post("/v1/customers", &form).await.expect(200).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    if subscribed {
        let pm = app
            .sim_post(
                "/v1/payment_methods/pm_card_visa/attach",
                &[("customer", &id)],
            )
            .await
            .expect(200)
            .body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.sim_post(
            "/v1/subscriptions",
            &[
                ("customer", &id),
                ("items[0][price]", price),
                ("default_payment_method", &pm),
            ],
        )
        .await
        .expect(200);
    }
    id
}

pub async fn price(app: &TestApp) -> String {
    let product = app
        .sim_post("/v1/products", &[("name", "Platform plan")])
        .await
        .body;
    app.sim_post(
        "/v1/prices",
        &[
            ("product", product["id"].as_str().unwrap()),
            ("unit_amount", "29900"),
            ("currency", "usd"),
            ("recurring[interval]", "month"),
        ],
    )
    .await
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn link(platform: &PlatformDb, tenant: &str, customer: &str) {
    sqlx::query(
        "INSERT INTO stripe_customers (id, tenant_id, stripe_customer_id, email)
         VALUES (gen_random_uuid(), $1::uuid, $2, 'admin@example.com')",
    )
    .bind(tenant)
    .bind(customer)
    .execute(&platform.pool)
    .await
    .unwrap();
}

async fn tenants_here(app: &TestApp) -> Vec<thanotopolis_billing::db::tenants::Tenant> {
    thanotopolis_billing::db::tenants::list(&app.db)
        .await
        .unwrap()
}

async fn usage_here(app: &TestApp, tenant: &str) -> Value {
    app.get(
        &format!("/api/billing/dashboard?tenant_id={tenant}"),
        Some(&super_admin()),
    )
    .await
    .expect(200)
    .body["current_period_usage"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_dry_then_applies_once() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let price = price(&app).await;
    let tagged = platform.add_tenant("Tagged", "tagged", false).await;
    let untagged = platform.add_tenant("Untagged", "untagged", false).await;
    let demo = platform.add_tenant("Demo Org", "demo", true).await;
    let odd = platform.add_tenant("Odd Name", "Odd_Name", false).await;
    let gone = platform.add_tenant("Gone", "gone", false).await;
    let twice = platform.add_tenant("Twice", "twice", false).await;

    let cus_tagged = customer(&app, &price, Some(&tagged), true).await;
    let cus_untagged = customer(&app, &price, None, true).await;
    let cus_gone = customer(&app, &price, Some(&gone), false).await;
    app.client
        .delete(format!("{}/v1/customers/{cus_gone}", app.sim))
        .bearer_auth("sk_test_api_tests")
        .send()
        .await
        .unwrap();
    let cus_twice = customer(&app, &price, Some(&twice), true).await;
    let cus_twice_b = customer(&app, &price, Some(&twice), false).await;
    let cus_orphan = customer(&app, &price, None, true).await;
    for (t, c) in [
        (&tagged, &cus_tagged),
        (&untagged, &cus_untagged),
        (&gone, &cus_gone),
        (&twice, &cus_twice),
    ] {
        link(&platform, t, c).await;
    }
    // Usage: last month (billed by the platform) and this month (ours from the cut-over).
    let month_start =
        thanotopolis_billing::domain::BillingPeriod::containing(Utc::now(), chrono_tz::UTC)
            .bounds(chrono_tz::UTC)
            .0;
    platform
        .record(
            &tagged,
            "stt_words",
            "500",
            json!({}),
            Some(month_start - Duration::days(3)),
        )
        .await;
    platform
        .record(&tagged, "stt_words", "40", json!({}), None)
        .await;
    platform
        .record(
            &untagged,
            "telephony_minutes",
            "3",
            json!({"call_id": "c-1"}),
            None,
        )
        .await;

    let state = follower_state(&app, &platform.url(None));
    let source = Source::connect_lazy(&platform.url(None)).unwrap();
    let lookback = std::time::Duration::from_secs(60);
    let run = |apply: bool| {
        let (state, source) = (state.clone(), source.clone());
        async move {
            import::run(&state, &source, apply, month_start, lookback)
                .await
                .unwrap()
        }
    };

    let check_conflicts = |r: &ImportReport| {
        let text = r.render();
        let two = r.conflicts_of("two_customers");
        assert_eq!(two.len(), 1, "{text}");
        assert!(two[0].sentence().contains(&cus_twice_b), "{text}");
        let missing = r.conflicts_of("customer_missing");
        assert_eq!(missing.len(), 1, "{text}");
        assert!(missing[0].sentence().contains(&cus_gone), "{text}");
        let orphans = r.conflicts_of("live_subscription_without_tenant");
        assert_eq!(orphans.len(), 1, "{text}");
        assert!(orphans[0].sentence().contains(&cus_orphan), "{text}");
    };

    // Dry: the report, every conflict, nothing changed here or in Stripe.
    let dry = run(false).await;
    check_conflicts(&dry);
    let subdomain = dry.conflicts_of("subdomain");
    assert_eq!(subdomain.len(), 1, "{}", dry.render());
    assert!(
        subdomain[0].sentence().contains("\"odd-name\""),
        "{}",
        dry.render()
    );
    assert_eq!(
        dry.usage.rows_by_type.values().sum::<i64>(),
        2,
        "this month's rows only"
    );
    assert!(
        tenants_here(&app).await.is_empty(),
        "a dry run registers nothing"
    );
    let c = app
        .sim_get(&format!("/v1/customers/{cus_untagged}"))
        .await
        .body;
    assert!(
        c["metadata"]["tenant_id"].is_null(),
        "a dry run writes nothing to Stripe"
    );
    assert!(dry.render().contains("would do"));

    // Applied, twice: the same state after both.
    for round in 0..2 {
        let applied = run(true).await;
        check_conflicts(&applied);
        let here = tenants_here(&app).await;
        assert_eq!(here.len(), 6, "round {round}");
        let by_id = |id: &str| here.iter().find(|t| t.id == id).unwrap().clone();
        assert_eq!(by_id(&odd).subdomain, "odd-name");
        assert!(by_id(&demo).is_demo, "demo since its creation");
        assert!(!by_id(&tagged).is_demo);
        let c = app
            .sim_get(&format!("/v1/customers/{cus_untagged}"))
            .await
            .body;
        assert_eq!(
            c["metadata"]["tenant_id"],
            untagged.as_str(),
            "round {round}"
        );
        for (t, c) in [
            (&tagged, &cus_tagged),
            (&untagged, &cus_untagged),
            (&twice, &cus_twice),
        ] {
            assert_eq!(
                thanotopolis_billing::db::customers::customer_of(&app.db, t)
                    .await
                    .unwrap()
                    .as_deref(),
                Some(c.as_str())
            );
            assert!(
                app.live_subscription(t).await.is_some(),
                "stripe sync brought {t}'s subscription"
            );
        }
        assert_eq!(
            thanotopolis_billing::db::customers::customer_of(&app.db, &gone)
                .await
                .unwrap(),
            None
        );
        let u = usage_here(&app, &tagged).await;
        assert_eq!(
            u["total_stt_words"], 40,
            "from the cut-over only, once (round {round})"
        );
        assert_eq!(usage_here(&app, &untagged).await["total_phone_calls"], 1);
        assert!(
            matches!(applied.usage.applied, Some(Ok((2, 0)))),
            "{:?}",
            applied.usage.applied
        );
    }
    // A dry run afterwards finds everything in place.
    let after = run(false).await;
    assert!(after.organizations.iter().all(|o| o.exists));
}
