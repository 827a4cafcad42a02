//! The monthly run over many tenants against the Stripe simulator held to a rate limit and a latency, to
//! see how close the run comes to the bound the rate limits set: the Stripe calls over the global rate,
//! or the busiest endpoint's calls over Stripe's 25 per second per endpoint, whichever is longer.
//!
//! ```sh
//! cargo run --release --example billing_bench -- --tenants 10000 --rps 100 --latency-ms 30
//! ```
//! Add `--postgres postgres://postgres@127.0.0.1:5432/billing_bench` to run on PostgreSQL (the database
//! must exist; its tables are dropped and recreated). With `--http` the run is started as an operator
//! starts it: `POST /api/admin/billing/runs` with `wait: true` to the service serving on loopback, then
//! its page (`GET /api/admin/billing/runs/{run_id}`) read every second until it ends when the start
//! answers 202; the time counts from the POST to the end the page shows.

use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use thanotopolis_billing::auth::jwt::{self, Claims};
use thanotopolis_billing::billing::{run_period, RunOptions, RunReport};
use thanotopolis_billing::config::{Secret, Settings};
use thanotopolis_billing::db::{self, customers, subscriptions, tenants, Db};
use thanotopolis_billing::domain::{BillingPeriod, TenantId};
use thanotopolis_billing::startup::Application;
use thanotopolis_billing::state::AppState;
use thanotopolis_billing::usage::{fold, ingest, NewEvent, UsageType};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = arg("--tenants", "10000").parse()?;
    let rps: u32 = arg("--rps", "100").parse()?;
    let latency: u64 = arg("--latency-ms", "30").parse()?;
    let postgres = arg("--postgres", "");
    let over_http = std::env::args().any(|a| a == "--http");

    let sim = stripe_sim::spawn("127.0.0.1:0".parse()?, stripe_sim::SimConfig::default()).await?;
    let dir = std::env::temp_dir().join(format!("billing-bench-{}", std::process::id()));
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
    let vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url.clone()),
        ("STRIPE_API_BASE".into(), sim.base_url.clone()),
        ("STRIPE_SECRET_KEY".into(), "sk_test_bench".into()),
        ("STRIPE_MAX_REQUESTS_PER_SECOND".into(), rps.to_string()),
        ("BIND".into(), "127.0.0.1:0".into()),
        ("JWT_SECRET".into(), "bench".into()),
    ]);
    let settings = Settings::from_vars(&vars).map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings_for_http = settings.clone();
    let db = Db::connect(&database_url).await?;
    db::migrate(&db).await?;
    let state = AppState::new(db.clone(), Arc::new(settings), Secret::new("bench"));

    eprintln!("seeding {n} tenants with customers, subscriptions and usage ...");
    let seed_started = Instant::now();
    let period = BillingPeriod::containing(Utc::now(), chrono_tz::UTC).prev();
    let at = period.bounds(chrono_tz::UTC).0 + chrono::Duration::days(3);
    let http = reqwest::Client::new();
    let mut batch = Vec::new();
    for i in 0..n {
        let id = format!("tenant-{i:05}");
        let tid = TenantId::parse(&id).map_err(|e| anyhow::anyhow!(e))?;
        tenants::add(&db, &tid, &format!("Org {i}"), &format!("org-{i}")).await?;
        let customer: serde_json::Value = http
            .post(format!("{}/v1/customers", sim.base_url))
            .bearer_auth("sk_test_bench")
            .form(&[("name", id.as_str()), ("metadata[tenant_id]", id.as_str())])
            .send()
            .await?
            .json()
            .await?;
        let cid = customer["id"].as_str().unwrap_or_default().to_owned();
        // A card on file, as checkout leaves one.
        http.post(format!("{}/_sim/customers/{cid}/card", sim.base_url))
            .bearer_auth("sk_test_bench")
            .form(&[("card", "4242424242424242")])
            .send()
            .await?
            .error_for_status()?;
        customers::link(&db, &id, &cid, None).await?;
        let long_ago = Utc::now() - chrono::Duration::days(120);
        subscriptions::upsert(
            &db,
            &subscriptions::SubscriptionRow {
                stripe_subscription_id: format!("sub_bench_{i}"),
                tenant_id: id.clone(),
                stripe_customer_id: cid,
                status: "active".into(),
                price_id: None,
                amount_cents: 29_900,
                currency: "usd".into(),
                current_period_start: None,
                current_period_end: None,
                trial_start: None,
                trial_end: None,
                cancel_at_period_end: false,
                canceled_at: None,
                ended_at: None,
                stripe_created_at: long_ago,
                stripe_updated_at: long_ago,
            },
        )
        .await?;
        for (k, (ty, q)) in [
            (UsageType::SttWords, 1_500 + i as i64),
            (UsageType::TtsWords, 700),
            (UsageType::PhoneCalls, 1),
        ]
        .into_iter()
        .enumerate()
        {
            batch.push(NewEvent {
                event_id: format!("{id}-{k}"),
                tenant_id: tid.clone(),
                usage_type: ty,
                quantity: q,
                occurred_at: at,
                metadata: None,
            });
        }
        if batch.len() >= 990 {
            ingest(&db, &batch, Utc::now(), chrono_tz::UTC).await?;
            batch.clear();
        }
    }
    ingest(&db, &batch, Utc::now(), chrono_tz::UTC).await?;
    eprintln!("seeded in {:.1} s", seed_started.elapsed().as_secs_f64());
    // Usage is folded as `serve` folds it (every second), so the run reads rollups and a short tail.
    let folding = db.clone();
    tokio::spawn(async move {
        while fold::fold(&folding).await.is_ok() {
            tokio::time::sleep(fold::INTERVAL).await;
        }
    });

    let form = |k: &str, v: String| [(k.to_owned(), v)];
    http.post(format!("{}/_sim/stats/reset", sim.base_url))
        .send()
        .await?;
    http.post(format!("{}/_sim/rate_limit", sim.base_url))
        .form(&form("per_second", rps.to_string()))
        .send()
        .await?;
    http.post(format!("{}/_sim/latency", sim.base_url))
        .form(&form("ms", latency.to_string()))
        .send()
        .await?;

    let started = Instant::now();
    let report = if over_http {
        run_over_http(settings_for_http, &period, &http).await?
    } else {
        let mut opts = RunOptions::new(&state, false);
        let total = n as u64;
        opts.progress = Some(Arc::new(move |done, _| {
            if done % 1000 == 0 || done == total {
                eprintln!(
                    "  {done}/{total} tenants after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }));
        run_period(&state, period, opts).await?
    };
    let secs = started.elapsed().as_secs_f64();
    let stats: serde_json::Value = http
        .get(format!("{}/_sim/stats", sim.base_url))
        .send()
        .await?
        .json()
        .await?;
    let calls = stats["requests_total"].as_u64().unwrap_or(0);
    // Endpoints as Stripe counts them: a method and a path, ids counted together (the simulator's
    // route names are exactly that).
    let (busiest, busiest_calls) = stats["by_route"]
        .as_object()
        .and_then(|routes| {
            routes
                .iter()
                .map(|(route, n)| (route.clone(), n.as_u64().unwrap_or(0)))
                .max_by_key(|(_, n)| *n)
        })
        .unwrap_or_default();
    let per_endpoint = f64::from(rps.min(25));
    let bound = (calls as f64 / f64::from(rps)).max(busiest_calls as f64 / per_endpoint);
    println!(
        "busiest endpoint: {busiest} ({busiest_calls} calls at {per_endpoint}/s = {:.1} s)",
        busiest_calls as f64 / per_endpoint
    );
    println!(
        "tenants={n} billed={} failed={} billed_cents={} stripe_calls={calls} run_s={secs:.1} bound_s={bound:.1} ratio={:.3} store={} over={} rps={rps} latency_ms={latency}",
        report.totals.tenants_billed,
        report.failed.len(),
        report.totals.billed_cents,
        secs / bound,
        if postgres.is_empty() { "sqlite" } else { "postgres" },
        if over_http { "http" } else { "in-process" },
    );
    for f in report.failed.iter().take(3) {
        eprintln!("failed: {} {}", f.tenant_id, f.error);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts the service on loopback and the run through its API, as an operator does: the POST waits
/// (`wait: true`) and answers the report, or 202 once the wait is over, and then the run's page is
/// read until it ends.
async fn run_over_http(
    settings: Settings,
    period: &BillingPeriod,
    http: &reqwest::Client,
) -> anyhow::Result<RunReport> {
    let app = Application::build(settings, Secret::new("bench")).await?;
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let token = jwt::sign(
        &Claims {
            sub: "bench".into(),
            tenant_id: "platform".into(),
            role: "super_admin".into(),
            exp: Utc::now().timestamp() + 86_400,
            email: None,
        },
        b"bench",
    );
    let started = Instant::now();
    let reply = http
        .post(format!("{base}/api/admin/billing/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"period": period.to_string(), "wait": true}))
        .send()
        .await?;
    let status = reply.status().as_u16();
    let body: serde_json::Value = reply.json().await?;
    eprintln!(
        "  POST answered {status} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report = match status {
        200 => body,
        202 => {
            let id = body["run_id"].as_str().unwrap_or_default().to_owned();
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let run: serde_json::Value = http
                    .get(format!("{base}/api/admin/billing/runs/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                if run["status"] != "running" {
                    eprintln!(
                        "  the run's page shows it {} after {:.1} s",
                        run["status"],
                        started.elapsed().as_secs_f64()
                    );
                    break run["report"].clone();
                }
            }
        }
        _ => anyhow::bail!("the run did not start: {status} {body}"),
    };
    Ok(serde_json::from_value(report)?)
}
