//! Throughput and memory of the simulator over HTTP.
//!
//! `cargo run --release -p stripe-sim --example sim_bench -- --clients 16 --objects 100000`
//! Each client loops on: create a customer, then an invoice item for it. Prints requests per
//! second and the process's resident memory (simulator and clients share the process; the
//! clients' share is small and measured before the run).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use stripe_sim::{spawn, SimConfig};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let clients = arg("--clients", 16);
    let objects = arg("--objects", 100_000);
    let sim = spawn("127.0.0.1:0".parse().expect("addr"), SimConfig::default()).await?;
    let base = sim.base_url.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let rss_before = rss_mib();
    let pairs = objects / 2;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, next, failures) =
            (http.clone(), base.clone(), next.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < pairs {
                let res = http
                    .post(format!("{base}/v1/customers"))
                    .bearer_auth("sk_test_bench")
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
                    .bearer_auth("sk_test_bench")
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
    sim.shutdown().await;
    Ok(())
}
