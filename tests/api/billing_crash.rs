//! The `bill` process killed (SIGKILL) at random moments, again and again, then run to the end: every
//! tenant has exactly one invoice with exactly its lines, and nothing is left pending in Stripe.

use crate::helpers::{spawn_app, stripe_lines, token, Store, TestApp, JWT_SECRET};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::Duration;
use thanotopolis_billing::domain::{group_thousands, BillingPeriod};

const TENANTS: usize = 6;

fn bill(app: &TestApp, period: BillingPeriod) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"));
    cmd.args(["bill", "--period", &period.to_string(), "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("STRIPE_API_BASE", &app.sim)
        .env("STRIPE_SECRET_KEY", "sk_test_api_tests")
        // Slow enough that kills land in the middle of the Stripe steps.
        .env("STRIPE_MAX_REQUESTS_PER_SECOND", "25")
        .env("STRIPE_MAX_RETRIES", "1")
        .env("STRIPE_RETRY_BASE_MS", "5")
        // A killed runner's claim on the period expires quickly, so the next one can take over.
        .env("BILLING_LEASE_SECONDS", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn killed_and_restarted(app: TestApp) {
    let period = BillingPeriod::containing(chrono::Utc::now(), chrono_tz::UTC).prev();
    let at = format!("{period}-15T12:00:00Z");
    for i in 0..TENANTS {
        let t = format!("k{i}");
        app.add_tenant(&t).await;
        app.subscribe(&t, None, "4242424242424242").await;
        let events = json!({"events": [
            {"event_id": format!("{t}-a"), "tenant_id": t, "type": "stt_words", "quantity": 1_000 + i as i64, "occurred_at": at},
            {"event_id": format!("{t}-b"), "tenant_id": t, "type": "phone_calls", "quantity": 1, "occurred_at": at},
        ]});
        app.post("/api/usage/events", Some(&token("p", "service")), &events)
            .await
            .expect(200);
    }
    let seed: u64 = rand::rng().random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..6 {
        let mut child = bill(&app, period).spawn().expect("start bill");
        let after = Duration::from_millis(rng.random_range(20..700));
        tokio::select! {
            _ = child.wait() => {}
            _ = tokio::time::sleep(after) => {
                child.start_kill().expect("kill");
                let _ = child.wait().await;
            }
        }
        eprintln!("round {round}: killed after {after:?} (seed {seed})");
        // Let the killed runner's lease expire.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    let out = bill(&app, period).output().await.expect("final run");
    assert!(
        out.status.success(),
        "final run failed (seed {seed}): {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    // Every tenant is accounted for once: billed by this run, or already billed by a killed one.
    let billed = report["billed"].as_array().unwrap().len();
    let already = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "already_billed")
        .count();
    assert_eq!(billed + already, TENANTS, "seed {seed}: {report}");
    assert_eq!(
        report["totals"]["tenants_billed"], billed,
        "seed {seed}: {report}"
    );

    for i in 0..TENANTS {
        let t = format!("k{i}");
        let mine = app.usage_invoices(&t, period).await;
        assert_eq!(
            mine.len(),
            1,
            "seed {seed}: {t} has {} invoices",
            mine.len()
        );
        let words = 1_000 + i as i64;
        let w = group_thousands(words as u64);
        assert_eq!(
            stripe_lines(&mine[0]),
            vec![
                (
                    format!("Voice Usage: {w} words (STT: {w}, TTS: 0)"),
                    (words * 100 + 500) / 1000
                ),
                ("Phone Calls: 1 call".to_owned(), 100),
            ],
            "seed {seed}: {t}"
        );
        assert_eq!(mine[0]["status"], "paid", "seed {seed}: {t}");
    }
    assert_eq!(
        app.stray_invoice_items().await,
        0,
        "seed {seed}: stray pending invoice items"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_killed_at_random_points_sqlite() {
    killed_and_restarted(spawn_app(Store::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_killed_at_random_points_postgres() {
    killed_and_restarted(spawn_app(Store::Postgres).await).await;
}
