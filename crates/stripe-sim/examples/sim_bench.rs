//! Throughput and memory of the simulator over HTTP.
//!
//! Two modes:
//!
//! - `--mode pairs` (default):
//!   `cargo run --release -p stripe-sim --example sim_bench -- --clients 16 --objects 100000`.
//!   Each client loops on: create a customer, then an invoice item for it.
//! - `--mode fill`:
//!   `cargo run --release -p stripe-sim --example sim_bench -- --mode fill --customers 10000 --clients 8 --seconds 10`.
//!   Sets up `--customers` customers through the HTTP API, each with a card, a subscription (and
//!   its first invoice), a pending invoice item and an invoice holding it; then, for `--seconds`,
//!   each client loops on what a billing run does per tenant: find the customer by metadata
//!   (search), list its invoices, create an invoice. With `--advance-days N`, then moves the
//!   simulator's clock N days (every subscription renews, each renewal invoiced and charged) and
//!   times it.
//!
//! Prints requests per second and the process's resident memory (simulator and clients share the
//! process; the clients' share is small and measured before the run).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stripe_sim::{spawn, SimConfig};

const KEY: &str = "sk_test_bench";

fn arg(name: &str, default: usize) -> usize {
    arg_str(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn id_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let clients = arg("--clients", 16).max(1);
    let sim = spawn("127.0.0.1:0".parse().expect("addr"), SimConfig::default()).await?;
    let base = sim.base_url.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    match arg_str("--mode").as_deref().unwrap_or("pairs") {
        "fill" => fill(&http, &base, clients).await,
        _ => pairs(&http, &base, clients).await,
    }
    sim.shutdown().await;
    Ok(())
}

async fn pairs(http: &reqwest::Client, base: &str, clients: usize) {
    let objects = arg("--objects", 100_000);
    let rss_before = rss_mib();
    let pairs = objects / 2;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, next, failures) = (
            http.clone(),
            base.to_string(),
            next.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < pairs {
                let res = http
                    .post(format!("{base}/v1/customers"))
                    .bearer_auth(KEY)
                    .form(&[
                        ("email", "bench@example.com"),
                        ("metadata[tenant_id]", "bench"),
                    ])
                    .send()
                    .await;
                let Ok(res) = res else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let cid = id_of(&res.text().await.unwrap_or_default());
                let ok = http
                    .post(format!("{base}/v1/invoiceitems"))
                    .bearer_auth(KEY)
                    .form(&[
                        ("customer", cid.as_str()),
                        ("amount", "1234"),
                        ("currency", "usd"),
                        ("description", "Phone Calls: 12 calls"),
                    ])
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let requests = pairs * 2;
    println!("clients:          {clients}");
    println!("requests:         {requests} ({pairs} customers + {pairs} invoice items, each with its event)");
    println!("failures:         {}", failures.load(Ordering::Relaxed));
    println!("elapsed:          {secs:.2} s");
    println!("throughput:       {:.0} requests/s", requests as f64 / secs);
    println!("RSS before:       {rss_before:.1} MiB");
    println!("RSS after:        {:.1} MiB", rss_mib());
}

/// POSTs `form` and returns the new object's id, or `None` on any failure.
async fn post_id(
    http: &reqwest::Client,
    url: String,
    form: &[(&str, &str)],
    failures: &AtomicUsize,
) -> Option<String> {
    let res = http.post(url).bearer_auth(KEY).form(form).send().await;
    match res {
        Ok(r) if r.status().is_success() => {
            Some(id_of(&r.text().await.unwrap_or_default())).filter(|i| !i.is_empty())
        }
        _ => {
            failures.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// One customer as the billing service keeps them: a card, a subscription (with its first
/// invoice), a pending usage item and a usage invoice holding it.
async fn set_up_customer(
    http: &reqwest::Client,
    base: &str,
    price: &str,
    i: usize,
    failures: &AtomicUsize,
) {
    let tenant = format!("tenant-{i}");
    let email = format!("{tenant}@example.com");
    let Some(cid) = post_id(
        http,
        format!("{base}/v1/customers"),
        &[
            ("email", email.as_str()),
            ("metadata[tenant_id]", tenant.as_str()),
            ("payment_method", "pm_card_visa"),
            ("invoice_settings[default_payment_method]", "pm_card_visa"),
        ],
        failures,
    )
    .await
    else {
        return;
    };
    let _ = post_id(
        http,
        format!("{base}/v1/subscriptions"),
        &[
            ("customer", cid.as_str()),
            ("items[0][price]", price),
            ("metadata[tenant_id]", tenant.as_str()),
        ],
        failures,
    )
    .await;
    let _ = post_id(
        http,
        format!("{base}/v1/invoiceitems"),
        &[
            ("customer", cid.as_str()),
            ("amount", "1700"),
            ("currency", "usd"),
            ("description", "Phone Calls: 17 calls"),
        ],
        failures,
    )
    .await;
    let _ = post_id(
        http,
        format!("{base}/v1/invoices"),
        &[
            ("customer", cid.as_str()),
            ("pending_invoice_items_behavior", "include"),
            ("metadata[tenant_id]", tenant.as_str()),
            ("metadata[billing_period]", "2026-09"),
        ],
        failures,
    )
    .await;
}

#[derive(Default)]
struct OpStats {
    count: AtomicU64,
    micros: AtomicU64,
}

impl OpStats {
    fn add(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    fn report(&self, name: &str, secs: f64) {
        let n = self.count.load(Ordering::Relaxed);
        let mean_ms = if n == 0 {
            0.0
        } else {
            self.micros.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
        };
        println!(
            "  {name:<34} {n:>8} requests  {:>8.0} req/s  mean {mean_ms:.2} ms",
            n as f64 / secs
        );
    }
}

async fn fill(http: &reqwest::Client, base: &str, clients: usize) {
    let customers = arg("--customers", 10_000);
    let seconds = arg("--seconds", 10) as u64;
    let failures = Arc::new(AtomicUsize::new(0));
    let rss_before = rss_mib();

    let product = post_id(
        http,
        format!("{base}/v1/products"),
        &[("name", "Thanotopolis Pro")],
        &failures,
    )
    .await
    .unwrap_or_default();
    let price = post_id(
        http,
        format!("{base}/v1/prices"),
        &[
            ("product", product.as_str()),
            ("unit_amount", "29900"),
            ("currency", "usd"),
            ("recurring[interval]", "month"),
        ],
        &failures,
    )
    .await
    .unwrap_or_default();

    // Setup: every customer through the HTTP API, `clients` at a time.
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, price, next, failures) = (
            http.clone(),
            base.to_string(),
            price.clone(),
            next.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= customers {
                    break;
                }
                set_up_customer(&http, &base, &price, i, &failures).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let setup = start.elapsed().as_secs_f64();
    let setup_requests = customers * 4;
    println!("customers:        {customers} (4 requests each: customer, subscription, invoice item, invoice)");
    println!(
        "setup:            {setup:.1} s ({:.0} requests/s)",
        setup_requests as f64 / setup
    );
    println!(
        "RSS after setup:  {:.1} MiB (before: {rss_before:.1} MiB)",
        rss_mib()
    );

    // Measurement: search by metadata, list the customer's invoices, create an invoice.
    let search = Arc::new(OpStats::default());
    let list = Arc::new(OpStats::default());
    let create = Arc::new(OpStats::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, failures) = (http.clone(), base.to_string(), failures.clone());
        let (search, list, create) = (search.clone(), list.clone(), create.clone());
        tasks.push(tokio::spawn(async move {
            // A cheap deterministic spread over the customers.
            let mut i = (c * 7919) % customers.max(1);
            while Instant::now() < deadline {
                i = (i + 104_729) % customers.max(1);
                let t = Instant::now();
                let found = http
                    .get(format!("{base}/v1/customers/search"))
                    .bearer_auth(KEY)
                    .query(&[("query", format!("metadata['tenant_id']:'tenant-{i}'"))])
                    .send()
                    .await;
                let body = match found {
                    Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                search.add(t.elapsed());
                let cid = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["data"][0]["id"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let t = Instant::now();
                let ok = http
                    .get(format!("{base}/v1/invoices"))
                    .bearer_auth(KEY)
                    .query(&[("customer", cid.as_str()), ("limit", "10")])
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    list.add(t.elapsed());
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                let t = Instant::now();
                if post_id(
                    &http,
                    format!("{base}/v1/invoices"),
                    &[
                        ("customer", cid.as_str()),
                        ("description", "Thanotopolis voice usage and phone calls"),
                    ],
                    &failures,
                )
                .await
                .is_some()
                {
                    create.add(t.elapsed());
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let total: u64 = [&search, &list, &create]
        .iter()
        .map(|s| s.count.load(Ordering::Relaxed))
        .sum();
    println!("measured:         {secs:.1} s with {clients} clients");
    search.report("GET /v1/customers/search (metadata)", secs);
    list.report("GET /v1/invoices?customer=", secs);
    create.report("POST /v1/invoices", secs);
    println!(
        "throughput:       {:.0} requests/s (all three)",
        total as f64 / secs
    );
    println!("failures:         {}", failures.load(Ordering::Relaxed));
    println!("RSS after:        {:.1} MiB", rss_mib());

    let days = arg("--advance-days", 0);
    if days > 0 {
        let t = Instant::now();
        let ok = http
            .post(format!("{base}/_sim/clock/advance"))
            .form(&[("seconds", (days * 86_400).to_string())])
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        println!(
            "clock +{days} days:  {:.2} s{}",
            t.elapsed().as_secs_f64(),
            if ok { "" } else { " (failed)" }
        );
        println!("RSS after clock:  {:.1} MiB", rss_mib());
    }
}
