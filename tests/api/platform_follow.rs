//! The follower against the platform's tables filled as its code fills them: every billable row counted
//! once (on the dashboard and in the monthly run), a call recorded by two paths billed once, a row committed
//! late counted, a held row reported then billed after its fix, the platform's demo switch reaching Stripe
//! and never undoing ours, a crash and a second follower, the platform's database going away and back.

use crate::helpers::{self, spawn_app, super_admin, Store, TestApp};
use crate::platform_db::{eventually, follower_state, quick, PlatformDb, Proxy};
use crate::store_tests;
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

/// Starts a follower with `opts` (the follower's row already made by `start_follower` or an import).
fn restart_follower(
    app: &TestApp,
    url: &str,
    opts: follow::Options,
) -> tokio::task::JoinHandle<()> {
    let state = follower_state(app, url);
    let source = Source::connect_lazy(url).unwrap();
    tokio::spawn(follow::run(state, source, opts, Shutdown::never()))
}

/// Inserts a stt_words row in a transaction left open, as a platform session that has not committed yet;
/// `stamped_ago` moves its `usage_date`/`created_at` back, as a transaction begun that long ago stamps it.
async fn open_row(
    platform: &PlatformDb,
    tenant: &str,
    words: i64,
    stamped_ago: Duration,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    chrono::DateTime<Utc>,
) {
    let mut tx = platform.pool.begin().await.unwrap();
    let at: chrono::DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO usage_records (id, tenant_id, usage_type, amount, additional_data, usage_date, created_at)
         VALUES (gen_random_uuid(), $1::uuid, 'stt_words', $2, '{}', now() - $3, now() - $3)
         RETURNING usage_date",
    )
    .bind(tenant)
    .bind(words)
    .bind(stamped_ago.to_std().unwrap())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    (tx, at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_longer_than_the_lookback_finds_what_committed_meanwhile() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let url = platform.url(None);
    let follower = start_follower(&app, &url).await;
    eventually("registered", || async { registered(&app, &acme).await }).await;

    let (long, began) = open_row(&platform, &acme, 7, Duration::zero()).await;
    // A re-read covers the open row's time while it is open (so it is not visible to it): then the
    // follower stops, for longer than its 3 s lookback.
    eventually("a re-read past the open row", || async {
        let st = store::load(&app.db).await.unwrap().unwrap();
        st.recheck.is_some_and(|(_, through)| through.at > began)
    })
    .await;
    follower.abort();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    long.commit().await.unwrap();
    platform
        .record(&acme, "tts_words", "3", json!({}), None)
        .await;

    let follower = restart_follower(&app, &url, quick(3));
    eventually("the row committed while stopped counted", || async {
        usage_of(&app, &acme).await == (7, 3, 0)
    })
    .await;
    let st = store::load(&app.db).await.unwrap().unwrap();
    assert!(st.rows_late >= 1, "found by the re-read");
    assert_eq!(st.rows_swept, 0, "not by the sweep, which has not run");
    follower.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_between_the_first_read_and_the_first_reread_is_counted() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let url = platform.url(None);
    let start = previous_period().bounds(chrono_tz::UTC).0;
    store::init(&app.db, start).await.unwrap();
    let mut follower = follow::Follower::new(
        follower_state(&app, &url),
        Source::connect_lazy(&url).unwrap(),
        quick(30),
    );
    assert!(follower.lease().await.unwrap());
    follower.sync_tenants().await.unwrap();

    let (long, began) = open_row(&platform, &acme, 7, Duration::zero()).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // The first read passes the open row's time without seeing it...
    assert!(follower.catch_up().await.unwrap());
    assert!(store::load(&app.db).await.unwrap().unwrap().cursor.at > began);
    // ...which commits before the first re-read.
    long.commit().await.unwrap();
    assert!(follower.recheck().await.unwrap());
    for _ in 0..3 {
        follower.pass().await.unwrap();
    }
    assert_eq!(usage_of(&app, &acme).await, (7, 0, 0));
    assert_eq!(store::load(&app.db).await.unwrap().unwrap().rows_late, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_in_flight_at_an_import_are_counted_by_a_follower_started_later() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let url = platform.url(None);
    let (long, _) = open_row(&platform, &acme, 9, Duration::zero()).await;
    // The import reads up to the platform's clock (no settle time), past the open row.
    let state = follower_state(&app, &url);
    let source = Source::connect_lazy(&url).unwrap();
    let month_start = BillingPeriod::containing(Utc::now(), chrono_tz::UTC)
        .bounds(chrono_tz::UTC)
        .0;
    let lookback = std::time::Duration::from_secs(2);
    let report =
        thanotopolis_billing::platform::import::run(&state, &source, true, month_start, lookback)
            .await
            .unwrap();
    assert!(
        matches!(report.usage.applied, Some(Ok((0, 0)))),
        "{:?}",
        report.usage.applied
    );
    long.commit().await.unwrap();
    // `serve` starts later than the lookback after the import.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let follower = restart_follower(&app, &url, quick(2));
    eventually("the row in flight at the import counted", || async {
        usage_of(&app, &acme).await == (9, 0, 0)
    })
    .await;
    follower.abort();
}

// Our store either engine; the platform's PostgreSQL.
store_tests!(
    a_row_stamped_minutes_before_it_commits_is_found_by_the_sweep,
    a_demo_switch_seen_late_applies_as_of_when_it_happened,
);

async fn a_row_stamped_minutes_before_it_commits_is_found_by_the_sweep(app: TestApp) {
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let url = platform.url(None);
    let start = previous_period().prev().bounds(chrono_tz::UTC).0;
    store::init(&app.db, start).await.unwrap();
    // The platform's default lookback; a sweep every few hundred milliseconds.
    let mut opts = quick(600);
    opts.sweep_every = std::time::Duration::from_millis(300);
    let follower = restart_follower(&app, &url, opts);
    eventually("registered", || async { registered(&app, &acme).await }).await;

    // A web voice session idle for 11 minutes: its next row carries the time its transaction began.
    let (long, _) = open_row(&platform, &acme, 12, Duration::minutes(11)).await;
    let opened = Utc::now();
    platform
        .record(&acme, "tts_words", "5", json!({}), None)
        .await;
    eventually("re-reads and a sweep since the row was written", || async {
        let st = store::load(&app.db).await.unwrap().unwrap();
        st.recheck.is_some_and(|(_, through)| through.at > opened)
            && st.sweep.done_at.is_some_and(|at| at > opened)
    })
    .await;
    assert_eq!(usage_of(&app, &acme).await, (0, 5, 0));
    long.commit().await.unwrap();
    eventually("the row found by the sweep", || async {
        usage_of(&app, &acme).await == (12, 5, 0)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(usage_of(&app, &acme).await, (12, 5, 0), "counted once");
    let s = status(&app).await;
    let f = s.follow.as_ref().unwrap();
    assert_eq!(
        (f.rows_swept, f.rows_late),
        (1, 0),
        "the re-read's window ends 10 minutes back"
    );
    let text = s.render();
    assert!(text.contains("1 found by the sweep"), "{text}");
    assert!(text.contains("sweep: "), "{text}");
    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.contains("\nplatform_rows_swept_total 1\n"),
        "{metrics}"
    );
    follower.abort();
}

/// The tenant's billable words this period, as the dashboard's upcoming charges have them.
async fn billable_words(app: &TestApp, tenant: &str) -> i64 {
    dashboard(app, tenant).await["upcoming_charges"]["voice_words_count"]
        .as_i64()
        .unwrap()
}

async fn a_demo_switch_seen_late_applies_as_of_when_it_happened(app: TestApp) {
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let url = platform.url(None);
    let follower = start_follower(&app, &url).await;
    eventually("registered", || async { registered(&app, &acme).await }).await;
    app.subscribe(&acme, None, "4242424242424242").await;
    platform
        .record(&acme, "stt_words", "100", json!({}), None)
        .await;
    eventually("usage followed", || async {
        usage_of(&app, &acme).await == (100, 0, 0)
    })
    .await;

    // The follower is away while the platform switches the organization to demo and it goes on talking;
    // then back, and more usage.
    let follower =
        switch_while_away(&app, &platform, follower, &acme, true, "tts_words", "40").await;
    eventually("the switch and the usage seen", || async {
        dashboard(&app, &acme).await["is_demo"] == true
            && usage_of(&app, &acme).await == (100, 40, 0)
    })
    .await;
    let switched_on = platform_updated_at(&platform, &acme).await;
    let follower =
        switch_while_away(&app, &platform, follower, &acme, false, "stt_words", "70").await;
    eventually("the switch off and the usage seen", || async {
        dashboard(&app, &acme).await["is_demo"] == false
            && usage_of(&app, &acme).await == (170, 40, 0)
    })
    .await;
    assert_eq!(
        billable_words(&app, &acme).await,
        170,
        "the 40 words spoken as a demo account are free, the 70 after it are billed"
    );
    // The interval is the platform's: from its switch on to its switch off.
    let switched_off = platform_updated_at(&platform, &acme).await;
    let periods = thanotopolis_billing::with_pool!(&app.db, p => {
        sqlx::query_as::<_, (chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>)>(
            "SELECT started_at, ended_at FROM tenant_demo_periods WHERE tenant_id = $1",
        )
        .bind(&acme)
        .fetch_all(p)
        .await
    })
    .unwrap();
    assert_eq!(periods, [(switched_on, Some(switched_off))]);
    follower.abort();
}

/// Stops `follower`, switches `tenant`'s demo status on the platform, records usage, and starts a follower
/// again a second later.
async fn switch_while_away(
    app: &TestApp,
    platform: &PlatformDb,
    follower: tokio::task::JoinHandle<()>,
    tenant: &str,
    is_demo: bool,
    usage_type: &str,
    amount: &str,
) -> tokio::task::JoinHandle<()> {
    follower.abort();
    platform.set_demo(tenant, is_demo).await;
    platform
        .record(tenant, usage_type, amount, json!({}), None)
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    restart_follower(app, &platform.url(None), quick(30))
}

/// The platform's `tenants.updated_at` of `tenant`.
async fn platform_updated_at(platform: &PlatformDb, tenant: &str) -> chrono::DateTime<Utc> {
    sqlx::query_scalar("SELECT updated_at FROM tenants WHERE id = $1::uuid")
        .bind(tenant)
        .fetch_one(&platform.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_dated_demo_switch_leaves_a_billed_period_as_billed() {
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let acme = platform.add_tenant("Acme", "acme", false).await;
    let url = platform.url(None);
    let period = previous_period();
    let day = |d: i64| period.bounds(chrono_tz::UTC).0 + Duration::days(d - 1);
    // Last month's usage, there before the follower starts.
    platform
        .record(&acme, "stt_words", "1000", json!({}), Some(day(10)))
        .await;
    let follower = start_follower(&app, &url).await;
    eventually("registered", || async { registered(&app, &acme).await }).await;
    app.subscribe(&acme, None, "4242424242424242").await;
    eventually("last month's usage taken", || async {
        helpers::scalar(&app.db, "SELECT COUNT(*) FROM usage_events").await == 1
    })
    .await;
    let run = || async {
        app.post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": period.to_string()}),
        )
        .await
        .expect(200)
        .body
    };
    assert_eq!(run().await["totals"]["billed_cents"], 100);

    // The platform switched the organization to demo on the 5th; the follower, away since the 4th, sees
    // it only now.
    follower.abort();
    platform
        .execute(&format!(
            "UPDATE tenants SET is_demo = TRUE, updated_at = '{}' WHERE id = '{acme}'",
            day(5).to_rfc3339()
        ))
        .await;
    store::tenants_read(&app.db, day(4)).await.unwrap();
    let follower = restart_follower(&app, &url, quick(30));
    eventually("the switch applied", || async {
        dashboard(&app, &acme).await["is_demo"] == true
    })
    .await;
    let started: chrono::DateTime<Utc> = thanotopolis_billing::with_pool!(&app.db, p => {
        sqlx::query_scalar("SELECT started_at FROM tenant_demo_periods WHERE tenant_id = $1")
            .bind(&acme)
            .fetch_one(p)
            .await
    })
    .unwrap();
    assert_eq!(started, day(5), "as of the platform's switch");

    // Late usage of that month arrives: before the switch it is billable, after it free.
    let token = helpers::token("platform", "service");
    let late = |id: &str, words: i64, at: chrono::DateTime<Utc>| {
        json!({"event_id": id, "tenant_id": acme, "type": "stt_words", "quantity": words,
               "occurred_at": at.to_rfc3339()})
    };
    app.post(
        "/api/usage/events",
        Some(&token),
        &json!({"events": [late("late-3", 300, day(3)), late("late-8", 500, day(8))]}),
    )
    .await
    .expect(200);

    // What the run billed stays billed: no second invoice, nothing taken back.
    assert_eq!(run().await["totals"]["tenants_billed"], 0);
    app.assert_one_paid_usage_invoice(&acme, period, 1, "acme")
        .await;
    assert_eq!(
        helpers::scalar(
            &app.db,
            &format!(
                "SELECT SUM(billed_stt_words)::bigint FROM usage_rollups_folded
                 WHERE tenant_id = '{acme}' AND billed_by IS NOT NULL"
            )
        )
        .await,
        1000,
        "the claimed usage keeps its billed words"
    );
    let tenant = thanotopolis_billing::domain::TenantId::parse(&acme).unwrap();
    let unbilled = thanotopolis_billing::usage::billable::unbilled(
        &app.db,
        &tenant,
        Utc::now() + Duration::days(40),
        chrono_tz::UTC,
    )
    .await
    .unwrap();
    assert_eq!(
        unbilled.get(&period).map(|t| t.stt_words),
        Some(300),
        "late usage: the 3rd's billable, the 8th's free ({unbilled:?})"
    );
    follower.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizations_stripe_customer_recorded_on_the_platform_is_linked() {
    use crate::platform_import::{customer, link, price};
    let app = spawn_app(Store::Postgres).await;
    let platform = PlatformDb::new().await;
    let signed_up = platform.add_tenant("Signed Up", "signed-up", false).await;
    let other = platform.add_tenant("Other", "other", false).await;
    let url = platform.url(None);
    let follower = start_follower(&app, &url).await;
    eventually("registered", || async {
        registered(&app, &signed_up).await && registered(&app, &other).await
    })
    .await;
    let access = |tenant: String| {
        let app = &app;
        async move {
            app.get(
                &format!("/api/billing/access?tenant_id={tenant}"),
                Some(&super_admin()),
            )
            .await
            .expect(200)
            .body
        }
    };
    // The signup's checkout made a customer no organization names, with a live subscription.
    let price = price(&app).await;
    let cus = customer(&app, &price, None, true).await;
    assert_eq!(access(signed_up.clone()).await["reason"], "none");
    // A customer tagged with a tenant that is not this one is never linked to it.
    let foreign = customer(&app, &price, Some("another-tenant"), true).await;

    // An operator records the organization's customer on the platform.
    link(&platform, &other, &foreign).await;
    link(&platform, &signed_up, &cus).await;
    eventually("linked and synced", || async {
        app.live_subscription(&signed_up).await.is_some()
    })
    .await;
    assert_eq!(
        thanotopolis_billing::db::customers::customer_of(&app.db, &signed_up)
            .await
            .unwrap()
            .as_deref(),
        Some(cus.as_str())
    );
    let c = app.sim_get(&format!("/v1/customers/{cus}")).await.body;
    assert_eq!(c["metadata"]["tenant_id"], signed_up.as_str());
    let a = access(signed_up.clone()).await;
    assert_eq!(
        (a["allowed"].clone(), a["reason"].clone()),
        (json!(true), json!("active"))
    );
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        thanotopolis_billing::db::customers::customer_of(&app.db, &other)
            .await
            .unwrap(),
        None,
        "a customer tagged with another tenant stays unlinked"
    );
    follower.abort();
}
