//! Two `serve` processes on one PostgreSQL database: usage ingested through both, both schedulers wake for
//! the same closed period, and the period is billed by exactly one run with exact totals.

use crate::helpers::{spawn_app, stripe_lines, token, Store, JWT_SECRET, WEBHOOK_SECRET};
use serde_json::{json, Value};
use std::time::Duration;
use thanotopolis_billing::domain::BillingPeriod;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_bill_a_period_once() {
    let app = spawn_app(Store::Postgres).await;
    let period = BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC).prev();
    let tenants = ["rep-a", "rep-b", "rep-c", "rep-d"];
    for t in tenants {
        app.add_tenant(t).await;
        app.subscribe(t, None, "4242424242424242").await;
    }

    let mut replicas = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &app.database_url)
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", JWT_SECRET)
            .env("STRIPE_API_BASE", &app.sim)
            .env("STRIPE_SECRET_KEY", "sk_test_api_tests")
            .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("BILLING_SCHEDULER_INTERVAL_SECONDS", "2")
            .env("BILLING_LEASE_SECONDS", "5")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start serve");
        replicas.push((format!("http://127.0.0.1:{port}"), child));
    }
    let http = reqwest::Client::new();
    for (base, _) in &replicas {
        let mut up = false;
        for _ in 0..200 {
            if http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(up, "replica {base} did not start");
    }

    // Each tenant's usage arrives half through one replica, half through the other.
    let at = format!("{period}-20T08:00:00Z");
    for (r, (base, _)) in replicas.iter().enumerate() {
        let events: Vec<Value> = tenants
            .iter()
            .flat_map(|t| {
                [
                    json!({"event_id": format!("{t}-{r}-stt"), "tenant_id": t, "type": "stt_words", "quantity": 1_000, "occurred_at": at}),
                    json!({"event_id": format!("{t}-{r}-call"), "tenant_id": t, "type": "phone_calls", "quantity": 1, "occurred_at": at}),
                ]
            })
            .collect();
        let resp = http
            .post(format!("{base}/api/usage/events"))
            .bearer_auth(token("platform", "service"))
            .json(&json!({"events": events}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    // Both schedulers wake every 2 s; wait for the period to be completed.
    let mut completed = false;
    for _ in 0..300 {
        if thanotopolis_billing::billing::lease::completed_at(&app.db, period)
            .await
            .unwrap()
            .is_some()
        {
            completed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(completed, "no scheduler completed {period}");
    // Give the other scheduler a few more wake-ups to (not) run it again.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let runs = thanotopolis_billing::billing::run_log::recent(&app.db, 50)
        .await
        .unwrap();
    let for_period: Vec<_> = runs
        .iter()
        .filter(|r| r.period == period.to_string())
        .collect();
    assert_eq!(for_period.len(), 1, "exactly one run: {for_period:?}");
    assert_eq!(for_period[0].status, "completed");
    assert_eq!(for_period[0].trigger, "scheduler");
    let report = for_period[0].report.as_ref().unwrap();
    assert_eq!(report["totals"]["tenants_billed"], 4, "{report}");
    assert_eq!(
        report["totals"]["billed_cents"],
        4 * (200 + 200),
        "{report}"
    );

    for t in tenants {
        let mine = app.usage_invoices(t, period).await;
        assert_eq!(mine.len(), 1, "{t}");
        assert_eq!(
            stripe_lines(&mine[0]),
            vec![
                (
                    "Voice Usage: 2,000 words (STT: 2,000, TTS: 0)".to_owned(),
                    200
                ),
                ("Phone Calls: 2 calls".to_owned(), 200)
            ],
            "{t}"
        );
    }
    for (_, mut child) in replicas {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}
