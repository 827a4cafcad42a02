//! A run started over HTTP never depends on the request that started it: a client that hangs up mid-run
//! cancels nothing (every tenant is invoiced, with its lines, and the run is recorded as completed), and
//! a run longer than the wait answers 202 with its id, then completes.

use crate::helpers::{spawn_app_with_settings, super_admin, token, Reply, Store, TestApp};
use serde_json::{json, Value};
use std::time::Duration;
use thanotopolis_billing::domain::BillingPeriod;

const TENANTS: [&str; 3] = ["acme", "beta", "gamma"];

/// Stripe answers each call after this long: a tenant's six calls take well over the waits below.
const STRIPE_LATENCY_MS: &str = "120";

async fn app(store: Store, run_wait: Duration) -> TestApp {
    let app = spawn_app_with_settings(store, |_| {}, |s| s.billing.run_wait = run_wait).await;
    let period = last_period();
    for t in TENANTS {
        app.add_tenant(t).await;
        app.subscribe(t, None, "4242424242424242").await;
        app.post(
            "/api/usage/events",
            Some(&token("platform", "service")),
            &json!({"events": [
                {"event_id": format!("{t}-stt"), "tenant_id": t, "type": "stt_words", "quantity": 10_000, "occurred_at": format!("{period}-10T12:00:00Z")},
                {"event_id": format!("{t}-call"), "tenant_id": t, "type": "phone_calls", "quantity": 1, "occurred_at": format!("{period}-10T12:00:00Z")},
            ]}),
        )
        .await
        .expect(200);
    }
    app.sim_post("/_sim/latency", &[("ms", STRIPE_LATENCY_MS)])
        .await
        .expect(200);
    app
}

fn last_period() -> BillingPeriod {
    BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC).prev()
}

/// The period's runs, newest first.
async fn runs(app: &TestApp) -> Vec<Value> {
    app.get("/api/admin/billing/runs", Some(&super_admin()))
        .await
        .expect(200)
        .body["runs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits for the run to end; returns its record.
async fn finished(app: &TestApp, run_id: &str) -> Value {
    for _ in 0..600 {
        let run = app
            .get(
                &format!("/api/admin/billing/runs/{run_id}"),
                Some(&super_admin()),
            )
            .await
            .expect(200)
            .body;
        if run["status"] != "running" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} still running after 30 s");
}

/// Every tenant billed once by the run, its invoice paid in Stripe with both lines.
async fn assert_all_billed(app: &TestApp, run: &Value) {
    assert_eq!(run["status"], "completed", "{run}");
    let report = &run["report"];
    assert_eq!(
        report["totals"]["tenants_billed"],
        TENANTS.len(),
        "{report}"
    );
    assert_eq!(report["failed"], json!([]));
    for t in TENANTS {
        app.assert_one_paid_usage_invoice(t, last_period(), 2, t)
            .await;
    }
}

async fn a_client_that_hangs_up_cancels_nothing(store: Store) {
    // The wait is the contract's 50 s: the client gives up long before.
    let app = app(store, thanotopolis_billing::config::RUN_WAIT).await;
    let hung_up = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!("{}/api/admin/billing/runs", app.address))
        .bearer_auth(super_admin())
        .json(&json!({"period": last_period().to_string(), "wait": true}))
        .send()
        .await;
    assert!(
        hung_up.as_ref().is_err_and(|e| e.is_timeout()),
        "the client gave up before the answer: {hung_up:?}"
    );
    let started = runs(&app).await;
    assert_eq!(started.len(), 1, "one run recorded: {started:?}");
    assert_eq!(
        started[0]["status"], "running",
        "still going after the hang-up"
    );
    let run = finished(&app, started[0]["run_id"].as_str().unwrap()).await;
    assert_all_billed(&app, &run).await;
}

async fn a_long_run_answers_202_then_completes(store: Store) {
    let app = app(store, Duration::from_millis(200)).await;
    let reply: Reply = app
        .post(
            "/api/admin/billing/runs",
            Some(&super_admin()),
            &json!({"period": last_period().to_string(), "wait": true}),
        )
        .await;
    let accepted = reply.expect(202).body;
    assert_eq!(accepted["status"], "running");
    let run_id = accepted["run_id"].as_str().unwrap();
    let run = finished(&app, run_id).await;
    assert_eq!(run["run_id"], run_id);
    assert_all_billed(&app, &run).await;
    // The run it answered for is the only one: nothing ran twice.
    assert_eq!(runs(&app).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_cancels_nothing_sqlite() {
    a_client_that_hangs_up_cancels_nothing(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_cancels_nothing_postgres() {
    a_client_that_hangs_up_cancels_nothing(Store::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_answers_202_then_completes_sqlite() {
    a_long_run_answers_202_then_completes(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_answers_202_then_completes_postgres() {
    a_long_run_answers_202_then_completes(Store::Postgres).await;
}
