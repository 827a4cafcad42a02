//! `GET /api/billing/access` over HTTP, one client back to back: p50 and p99 latency, from our database
//! only. 10,000 tenants in every billing state (demo, trialing, active, canceling, past due with a
//! recorded failure, unpaid, canceled, none).
//!
//! ```sh
//! cargo run --release --example access_bench -- --tenants 10000 --requests 20000
//! ```
//! Add `--postgres postgres://postgres@127.0.0.1:5432/access_bench` to run on PostgreSQL (the database
//! must exist; its tables are dropped and recreated).

use chrono::Duration;
use std::collections::HashMap;
use std::time::Instant;
use thanotopolis_billing::auth::jwt::{self, Claims};
use thanotopolis_billing::config::{Secret, Settings};
use thanotopolis_billing::db::{self, subscriptions, tenants, webhook_events, Db};
use thanotopolis_billing::domain::{time::now, TenantId};
use thanotopolis_billing::startup::Application;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

const STATES: [&str; 8] = [
    "demo",
    "trialing",
    "active",
    "canceling",
    "past_due",
    "unpaid",
    "canceled",
    "none",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = arg("--tenants", "10000").parse()?;
    let requests: usize = arg("--requests", "20000").parse()?;
    let postgres = arg("--postgres", "");
    let dir = std::env::temp_dir().join(format!("access-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database_url = if postgres.is_empty() {
        format!("sqlite://{}/bench.db", dir.display())
    } else {
        let pool = sqlx::PgPool::connect(&postgres).await?;
        sqlx::query("DROP SCHEMA public CASCADE")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE SCHEMA public").execute(&pool).await?;
        postgres.clone()
    };
    let db = Db::connect(&database_url).await?;
    db::migrate(&db).await?;

    eprintln!("seeding {n} tenants ...");
    let t = now();
    for i in 0..n {
        let id = TenantId::parse(&format!("t{i:05}")).unwrap();
        tenants::add(&db, &id, &format!("Org {i}"), &format!("org{i}")).await?;
        let state = STATES[i % STATES.len()];
        if state == "demo" {
            tenants::set_demo(&db, &id, true).await?;
            continue;
        }
        if state == "none" {
            continue;
        }
        let status = match state {
            "canceling" => "active",
            s => s,
        };
        let sub = subscriptions::SubscriptionRow {
            stripe_subscription_id: format!("sub_{i}"),
            tenant_id: id.to_string(),
            stripe_customer_id: format!("cus_{i}"),
            status: status.into(),
            price_id: Some("price_1".into()),
            amount_cents: 29_900,
            currency: "usd".into(),
            current_period_start: Some(t - Duration::days(10)),
            current_period_end: Some(t + Duration::days(20)),
            trial_start: (state == "trialing").then(|| t - Duration::days(10)),
            trial_end: (state == "trialing").then(|| t + Duration::days(4)),
            cancel_at_period_end: state == "canceling",
            canceled_at: None,
            ended_at: (state == "canceled").then(|| t - Duration::days(1)),
            stripe_created_at: t - Duration::days(40),
            stripe_updated_at: t,
        };
        subscriptions::upsert(&db, &sub).await?;
        if state == "past_due" {
            let inv = thanotopolis_billing::db::invoices::InvoiceRow {
                stripe_invoice_id: format!("in_{i}"),
                tenant_id: id.to_string(),
                stripe_customer_id: format!("cus_{i}"),
                stripe_subscription_id: Some(format!("sub_{i}")),
                billing_period: None,
                status: "open".into(),
                number: None,
                period_start: None,
                period_end: None,
                amount_due_cents: 29_900,
                amount_paid_cents: 0,
                currency: "usd".into(),
                hosted_invoice_url: None,
                invoice_pdf: None,
                paid_at: None,
                due_date: None,
                lines: vec![],
                stripe_created_at: t - Duration::days(2),
                stripe_updated_at: t,
            };
            thanotopolis_billing::db::invoices::upsert(&db, &inv).await?;
            let ev = format!("evt_{i}");
            webhook_events::receive(
                &db,
                &ev,
                "invoice.payment_failed",
                Some(&inv.stripe_invoice_id),
                t - Duration::days(2),
            )
            .await?;
            webhook_events::mark_applied(&db, &ev, Some(id.as_str())).await?;
        }
    }
    db.close().await;

    let secret = "bench-jwt-secret-with-enough-entropy";
    let vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url.clone()),
        ("BIND".into(), "127.0.0.1:0".into()),
        ("JWT_SECRET".into(), secret.into()),
    ]);
    let settings = Settings::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let app = Application::build_with_listener(settings, Secret::new(secret), listener).await?;
    tokio::spawn(app.run_until(std::future::pending()));
    let token = jwt::sign(
        &Claims {
            sub: "platform".into(),
            tenant_id: "platform".into(),
            role: "service".into(),
            exp: chrono::Utc::now().timestamp() + 3600,
            email: None,
        },
        secret.as_bytes(),
    );
    let client = reqwest::Client::new();
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + 1000 {
        let tenant = format!("t{:05}", (i * 7919) % n);
        let started = Instant::now();
        let resp = client
            .get(format!("{address}/api/billing/access?tenant_id={tenant}"))
            .bearer_auth(&token)
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
        resp.bytes().await?;
        // The first thousand warm the pool and the caches.
        if i >= 1000 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "access, {} tenants, {requests} requests, {}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        n,
        if postgres.is_empty() {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        times.last().unwrap().as_secs_f64() * 1000.0
    );
    Ok(())
}
