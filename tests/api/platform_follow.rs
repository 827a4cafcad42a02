//! The follower against the platform's tables filled as its code fills them: every billable row counted
//! once (on the dashboard and in the monthly run), a call recorded by two paths billed once, a row committed
//! late counted, a held row reported then billed after its fix, the platform's demo switch reaching Stripe
//! and never undoing ours, a crash and a second follower, the platform's database going away and back.

use crate::helpers::{self, spawn_app, super_admin, Store, TestApp};
use crate::platform_db::{eventually, follower_state, quick, PlatformDb, Proxy};
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use thanotopolis_billing::domain::BillingPeriod;
use thanotopolis_billing::platform::{follow, store, Source};
use thanotopolis_billing::shutdown::Shutdown;

fn previous_period() -> BillingPeriod {
    BillingPeriod::containing(Utc::now(), chrono_tz::UTC).prev()
}

/// Starts a follower of `url` on `app`'s database, as `serve` runs it; it starts two months back.
async fn start_follower(app: &TestApp, url: &str) -> tokio::task::JoinHandle<()> {
    let state = follower_state(app, url);
    let start = previous_period().prev().bounds(chrono_tz::UTC).0;
    store::init(&app.db, start).await.unwrap();
    let source = Source::connect_lazy(url).unwrap();
    tokio::spawn(follow::run(state, source, quick(30), Shutdown::never()))
}

async fn registered(app: &TestApp, tenant: &str) -> bool {
    thanotopolis_billing::db::tenants::get(
        &app.db,
        &thanotopolis_billing::domain::TenantId::parse(tenant).unwrap(),
    )
    .await
    .unwrap()
    .is_some()
}

async fn dashboard(app: &TestApp, tenant: &str) -> Value {
    app.get(
        &format!("/api/billing/dashboard?tenant_id={tenant}"),
        Some(&super_admin()),
    )
    .await
    .expect(200)
    .body
}

async fn usage_of(app: &TestApp, tenant: &str) -> (i64, i64, i64) {
    let d = dashboard(app, tenant).await;
    let u = &d["current_period_usage"];
    (
        u["total_stt_words"].as_i64().unwrap(),
        u["total_tts_words"].as_i64().unwrap(),
        u["total_phone_calls"].as_i64().unwrap(),
    )
}

async fn status(app: &TestApp) -> thanotopolis_billing::platform::status::Status {
    thanotopolis_billing::platform::status::Status::read(&app.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_row_is_billed_once() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let acme = platform
        .add_tenant("Acme Funeral Home", "acme", false)
        .await;
    let bliss = platform.add_tenant("Bliss Memorial", "bliss", false).await;
    // Last month, as the voice agent and the telephony paths wrote it (before the follower starts: the
    // platform writes every row at its `now()`).
    let last = previous_period().bounds(chrono_tz::UTC).0 + Duration::days(9);
    let at = Some(last);
    let call = uuid::Uuid::new_v4().to_string();
    platform
        .record(
            &acme,
            "stt_words",
            "120.0000",
            json!({"call_id": call, "call_sid": "CA1"}),
            at,
        )
        .await;
    platform
        .record(
            &acme,
            "tts_words",
            "80.0000",
            json!({"call_id": call, "call_sid": "CA1"}),
            at,
        )
        .await;
    platform.record_call_twice(&acme, &call, at).await;
    platform
        .record(
            &acme,
            "telephony_minutes",
            "0",
            json!({"call_id": "call-y", "call_sid": "CA2"}),
            at,
        )
        .await;
    platform
        .record(
            &acme,
            "phone_calls",
            "1",
            json!({"duration_seconds": 30, "call_id": null}),
            at,
        )
        .await;
    platform
        .record(&acme, "tokens", "5000", json!({}), at)
        .await;
    let fractional = platform
        .record(&acme, "stt_words", "12.5000", json!({}), at)
        .await;
    let unknown = platform
        .record(&acme, "voice_words", "40", json!({}), at)
        .await;
    platform
        .record(&bliss, "stt_words", "1000", json!({}), at)
        .await;
    let follower = start_follower(&app, &platform.url(None)).await;
    eventually("organizations registered", || async {
        registered(&app, &acme).await && registered(&app, &bliss).await
    })
    .await;
    app.subscribe(&acme, None, "4242424242424242").await;
    app.subscribe(&bliss, None, "4242424242424242").await;
    // This month, web voice.
    platform
        .record(&acme, "tts_words", "50", json!({}), None)
        .await;

    eventually("this month's usage on the dashboard", || async {
        usage_of(&app, &acme).await == (0, 50, 0)
    })
    .await;
    eventually("the fractional and the unknown rows held", || async {
        status(&app).await.held_total() == 2
    })
    .await;
    let s = status(&app).await;
    let held: Vec<&str> = s.held_rows.iter().map(|h| h.record_id.as_str()).collect();
    assert!(
        held.contains(&fractional.as_str()) && held.contains(&unknown.as_str()),
        "{held:?}"
    );
    let text = s.render();
    assert!(
        text.contains("invalid_amount: 1") && text.contains("unknown_type: 1"),
        "{text}"
    );
    assert!(
        text.contains("12.5000 is not a whole number of words"),
        "{text}"
    );
    let metrics = app.get("/metrics", None).await.text;
    assert!(metrics.contains("\nplatform_rows_held 2\n"), "{metrics}");
    assert!(
        metrics.contains("\nplatform_follow_lag_seconds "),
        "{metrics}"
    );

    // The platform corrects the row: it is taken, once.
    platform
        .execute(&format!(
            "UPDATE usage_records SET amount = 13 WHERE id = '{fractional}'"
        ))
        .await;
    eventually("the corrected row released", || async {
        status(&app).await.held_total() == 1
    })
    .await;
    assert_eq!(status(&app).await.follow.unwrap().rows_released, 1);

    // The monthly run bills last month: every billable row once.
    let period = previous_period();
    let report = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": period.to_string()}),
        )
        .await
        .expect(200)
        .body;
    let lines = |tenant: &str| -> Vec<(String, i64)> {
        report["billed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["tenant_id"] == tenant)
            .unwrap_or_else(|| panic!("{tenant} billed: {report}"))["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["description"].as_str().unwrap().to_owned(),
                    l["amount_cents"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        lines(&acme),
        [
            ("Voice Usage: 213 words (STT: 133, TTS: 80)".to_owned(), 21),
            ("Phone Calls: 3 calls".to_owned(), 300)
        ]
    );
    assert_eq!(
        lines(&bliss),
        [(
            "Voice Usage: 1,000 words (STT: 1,000, TTS: 0)".to_owned(),
            100
        )]
    );
    app.assert_one_paid_usage_invoice(&acme, period, 2, "acme")
        .await;

    // A second follower, as another replica, and the first one stopped as by a crash: nothing twice.
    follower.abort();
    let second = start_follower(&app, &platform.url(None)).await;
    platform
        .record(&bliss, "tts_words", "9", json!({}), None)
        .await;
    eventually("the second follower took over", || async {
        usage_of(&app, &bliss).await == (0, 9, 0)
    })
    .await;
    let again = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": period.to_string()}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(again["totals"]["tenants_billed"], 0, "{again}");
    assert_eq!(usage_of(&app, &acme).await, (0, 50, 0));
    helpers::assert_rollups_hold_their_events(&app.db).await;
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_late_is_counted() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let follower = start_follower(&app, &platform.url(None)).await;
    eventually("registered", || async { registered(&app, &acme).await }).await;

    // A long transaction: its row's created_at is the transaction's start, it commits seconds later.
    let mut long = platform.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO usage_records (id, tenant_id, usage_type, amount, additional_data)
         VALUES (gen_random_uuid(), $1::uuid, 'stt_words', 7, '{}')",
    )
    .bind(&acme)
    .execute(&mut *long)
    .await
    .unwrap();
    let began: chrono::DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *long)
        .await
        .unwrap();
    // Rows after it are taken, and the cursor passes its time.
    platform
        .record(&acme, "tts_words", "3", json!({}), None)
        .await;
    eventually("the later row taken", || async {
        usage_of(&app, &acme).await == (0, 3, 0)
    })
    .await;
    eventually("the cursor past the open row's time", || async {
        store::load(&app.db).await.unwrap().unwrap().cursor.at > began
    })
    .await;
    assert_eq!(
        usage_of(&app, &acme).await,
        (0, 3, 0),
        "not committed: not seen"
    );
    long.commit().await.unwrap();
    eventually("the late row counted", || async {
        usage_of(&app, &acme).await == (7, 3, 0)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(usage_of(&app, &acme).await, (7, 3, 0), "counted once");
    assert!(status(&app).await.follow.unwrap().rows_late >= 1);
    follower.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_demo_switch_reaches_stripe_and_never_undoes_ours() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let late = platform.add_tenant("Late Demo", "late-demo", true).await;
    let follower = start_follower(&app, &platform.url(None)).await;
    eventually("registered", || async {
        registered(&app, &acme).await && registered(&app, &late).await
    })
    .await;
    assert_eq!(
        dashboard(&app, &late).await["is_demo"],
        true,
        "a demo organization is one here"
    );
    app.subscribe(&acme, None, "4242424242424242").await;
    let sub = app
        .live_subscription(&acme)
        .await
        .unwrap()
        .stripe_subscription_id;

    platform.set_demo(&acme, true).await;
    eventually("demo applied here", || async {
        dashboard(&app, &acme).await["is_demo"] == true
    })
    .await;
    eventually("collection paused in Stripe", || paused(&app, &sub)).await;

    // Our super admin switches it off here; the platform still says demo: the follower leaves it.
    app.post(
        &format!("/api/billing/set-demo-status/{acme}?is_demo=false"),
        Some(&super_admin()),
        &json!({}),
    )
    .await
    .expect(200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        dashboard(&app, &acme).await["is_demo"],
        false,
        "ours stands"
    );
    assert!(!paused(&app, &sub).await);

    // New changes on the platform are applied, each once.
    platform.set_demo(&acme, false).await;
    eventually("the platform's switch off seen", || async {
        !store::followed(&app.db).await.unwrap()[&acme].is_demo
    })
    .await;
    platform.set_demo(&acme, true).await;
    eventually("the platform's new change applied", || async {
        dashboard(&app, &acme).await["is_demo"] == true
    })
    .await;
    let demo_switches = helpers::scalar(
        &app.db,
        &format!("SELECT COUNT(*) FROM audit_log WHERE tenant_id = '{acme}' AND action = 'tenant.demo_on'"),
    )
    .await;
    assert_eq!(demo_switches, 2, "once per change on the platform");
    follower.abort();
}

/// Whether Stripe (the simulator) has collection paused on the subscription.
async fn paused(app: &TestApp, sub: &str) -> bool {
    !app.sim_get(&format!("/v1/subscriptions/{sub}")).await.body["pause_collection"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_serving_while_the_platform_database_is_away() {
    let platform = PlatformDb::new().await;
    let proxy = Proxy::start().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let url = platform.url(Some(&proxy));
    let (app, service) = helpers::spawn_process_with(|vars| {
        vars.insert("PLATFORM_DATABASE_URL".into(), url.clone());
        vars.insert("PLATFORM_LOOKBACK_S".into(), "10".into());
    })
    .await;
    eventually("registered by serve", || async {
        registered(&app, &acme).await
    })
    .await;
    platform
        .record(&acme, "stt_words", "11", json!({}), None)
        .await;
    eventually("usage followed", || async {
        usage_of(&app, &acme).await == (11, 0, 0)
    })
    .await;

    proxy.cut();
    platform
        .record(&acme, "stt_words", "4", json!({}), None)
        .await;
    eventually("the outage recorded", || async {
        status(&app).await.follow.unwrap().last_error.is_some()
    })
    .await;
    app.get("/healthz", None).await.expect(200);
    assert_eq!(usage_of(&app, &acme).await, (11, 0, 0), "serving meanwhile");

    proxy.restore();
    eventually("followed again", || async {
        usage_of(&app, &acme).await == (15, 0, 0)
    })
    .await;
    // The pass that took the rows says so once it ends.
    eventually("the recovery logged", || async {
        std::fs::read_to_string(&service.log)
            .unwrap_or_default()
            .contains("following the platform's database again")
    })
    .await;
    let log = service.stop().await;
    assert!(log.contains("could not be followed"), "{log}");
}
