//! Usage metering benchmark: not a test, a measurement. See docs/PERFORMANCE.md.
//!
//! ```text
//! cargo run --release --example usage_bench -- [--pg postgres://postgres@127.0.0.1:5432] [--events 200000]
//!     [--clients 4] [--rate 2000] [--seconds 10] [--rounds 3] [--dashboard-events 10000000] [--skip ...]
//! ```
//!
//! Each part starts the real service in-process on port 0 over a fresh database (a PostgreSQL schema in the
//! database `billing_bench`, or a SQLite file) and drives it over HTTP on loopback:
//! 1. batch ingestion: batches of 1,000 events posted by `--clients` concurrent clients (events/s);
//! 2. the ceiling: PostgreSQL `COPY` of the same rows into a table shaped like `usage_events`; 1 and 2
//!    alternate for `--rounds` rounds, each on a fresh schema, and their medians are compared;
//! 3. latency at a steady `--rate` events/s, single events or `--per-request` in each request (open
//!    loop: latency counts from the intended send time, so a stall is not hidden);
//! 4. dashboard latency over `--dashboard-events` events for `--dashboard-tenants` tenants, seeded with
//!    SQL, then the time of the monthly run's claim of `--claims` tenants.
//!
//! Batch figures name the tenants (`--tenants`, each event's drawn at random), when the events
//! occurred (`--spread hour|month`) and whether the rollups they count in were there before (`--warm`)
//! or are created as the run goes; every figure names the machine's load averages.

use chrono::{Duration, Utc};
use clap::Parser;
use sqlx::postgres::PgPoolOptions;
use sqlx::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use thanotopolis_billing::auth::jwt::{self, Claims};
use thanotopolis_billing::config::{Secret, Settings};
use thanotopolis_billing::db::{tenants, Db};
use thanotopolis_billing::domain::TenantId;
use thanotopolis_billing::startup::Application;
use thanotopolis_billing::usage;
use thanotopolis_billing::with_pool;

const SECRET: &str = "bench-secret-with-enough-entropy-for-hs256";

#[derive(Parser, Clone)]
struct Args {
    /// PostgreSQL server (the database billing_bench is created on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg: String,
    /// Events per batch-ingestion run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Concurrent clients posting batches.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Events per second for the steady-rate latency run.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Events per request in the steady-rate run (1: single events, `--rate` requests/s; 100: the
    /// same events in a twentieth of the requests, as a follower posts what it read).
    #[arg(long, default_value_t = 1)]
    per_request: usize,
    /// Duration of the latency runs, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events seeded for the dashboard run.
    #[arg(long, default_value_t = 10_000_000)]
    dashboard_events: i64,
    /// Tenants the dashboard's events are seeded over (at most 10,000).
    #[arg(long, default_value_t = 1_000)]
    dashboard_tenants: i64,
    /// Claims of the monthly run timed after the dashboard part (0: none).
    #[arg(long, default_value_t = 200)]
    claims: i64,
    /// Parts to skip: batch, copy, sqlite, single, dashboard (repeatable).
    #[arg(long)]
    skip: Vec<String>,
    /// Tenants the ingestion runs spread events over, each event's tenant drawn at random (as a
    /// platform's calls arrive): with 1,000, a batch of 1,000 events holds about 630 tenants.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// When the ingested events occurred: `hour` (all in the last hour) or `month` (spread over the
    /// last 30 days, so a batch touches up to 30 days of each tenant).
    #[arg(long, default_value = "hour", value_parser = ["hour", "month"])]
    spread: String,
    /// Rounds of batch ingestion and COPY (each on a fresh schema, alternating); medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Keep the dashboard's seeded schema (and reuse it when it exists) instead of dropping it.
    #[arg(long)]
    keep_seed: bool,
    /// Before each measured ingestion, post (unmeasured) one event per tenant and day of the spread,
    /// so the rollups exist and the service knows their ids, as in a service that has been running
    /// through the month; without it each round starts from an empty schema and creates them.
    #[arg(long)]
    warm: bool,
    /// Leave the dashboard's seeded schema without statistics (no `VACUUM ANALYZE` after seeding), as a
    /// database is right after a burst with autovacuum off or not yet run.
    #[arg(long)]
    no_statistics: bool,
}

struct App {
    base: String,
    db: Db,
}

fn mint(role: &str) -> String {
    jwt::sign(
        &Claims {
            sub: "bench".into(),
            tenant_id: "tenant-0000".into(),
            role: role.into(),
            exp: Utc::now().timestamp() + 86_400,
            email: None,
        },
        SECRET.as_bytes(),
    )
}

async fn spawn(database_url: &str) -> anyhow::Result<App> {
    let vars = HashMap::from([
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("JWT_SECRET".to_owned(), SECRET.to_owned()),
    ]);
    let settings = Settings::from_vars(&vars)?;
    let app = Application::build(settings, Secret::new(SECRET)).await?;
    let base = format!("http://{}", app.local_addr());
    let db = app.state().db.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    // Folds as `serve` does (its other background tasks, billing and merges, stay off), so its work
    // counts in every figure measured while it runs.
    let folding = db.clone();
    tokio::spawn(async move {
        loop {
            let started = Instant::now();
            // The part is over once its pool is closed.
            if usage::fold::fold(&folding).await.is_err() {
                break;
            }
            tokio::time::sleep(usage::fold::pause_after(started.elapsed())).await;
        }
    });
    Ok(App { base, db })
}

/// A fresh schema in `billing_bench`, and the URL whose connections use it.
async fn pg_schema(server: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = 'billing_bench'")
            .fetch_optional(&mut admin)
            .await?;
    if exists.is_none() {
        sqlx::query("CREATE DATABASE billing_bench")
            .execute(&mut admin)
            .await?;
    }
    admin.close().await?;
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/billing_bench")).await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(format!(
        "{server}/billing_bench?options=-c%20search_path%3D{name}"
    ))
}

/// Writes out what the parts before wrote (millions of rows), so that a latency part does not run
/// during the checkpoint that flushes them: a `CHECKPOINT`, which returns once it is on disk.
async fn settle(server: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/billing_bench")).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
        // Only superusers (or pg_checkpoint) may; the figures then include the flush.
        eprintln!("  (no CHECKPOINT before the latency run: {e})");
    }
    conn.close().await?;
    Ok(())
}

async fn drop_schema(server: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/billing_bench")).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

async fn add_tenants(db: &Db, n: usize) -> anyhow::Result<()> {
    for t in 0..n {
        let id = TenantId::parse(&format!("tenant-{t:04}")).map_err(anyhow::Error::msg)?;
        tenants::add(db, &id, &format!("Org {t}"), &format!("org{t}")).await?;
    }
    Ok(())
}

/// A well-mixed hash of `i` (splitmix64): the benchmark's "random" draws, the same in every run.
fn mix(i: usize, salt: u64) -> u64 {
    let mut z = (i as u64 ^ salt).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How far back events occurred, in seconds.
fn spread_seconds(spread: &str) -> u64 {
    match spread {
        "month" => 30 * 86_400,
        _ => 3_600,
    }
}

/// One event as the services send it: a random tenant of `tenants`, a type in turn, an instant drawn
/// over the spread (`hour` or `month`) back from now.
fn event_json(prefix: &str, i: usize, tenants: usize, spread: &str) -> serde_json::Value {
    let kinds = ["stt_words", "tts_words", "phone_calls"];
    let kind = kinds[i % 3];
    let back = mix(i, 1) % spread_seconds(spread);
    let at = Utc::now() - Duration::seconds(back as i64);
    serde_json::json!({
        "event_id": format!("{prefix}-{i:09}"),
        "tenant_id": format!("tenant-{:04}", mix(i, 2) % tenants as u64),
        "type": kind,
        "quantity": if kind == "phone_calls" { 1 } else { 1 + (i % 40) },
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "metadata": {"session": format!("s{}", i % 997)},
    })
}

/// The mean number of rollups (tenant, UTC day) a batch of 1,000 of these events touches.
fn rollups_per_batch(args: &Args) -> f64 {
    let batches = args.events.div_ceil(1000).min(20);
    let mut total = 0;
    for b in 0..batches {
        let keys: std::collections::HashSet<(u64, i64)> = (b * 1000..(b + 1) * 1000)
            .map(|i| {
                let back = (mix(i, 1) % spread_seconds(&args.spread)) as i64;
                let day = (Utc::now().timestamp() - back).div_euclid(86_400);
                (mix(i, 2) % args.tenants as u64, day)
            })
            .collect();
        total += keys.len();
    }
    total as f64 / batches as f64
}

fn batches(prefix: &str, events: usize, tenants: usize, spread: &str) -> Vec<axum::body::Bytes> {
    (0..events.div_ceil(1000))
        .map(|b| {
            let evs: Vec<_> = (b * 1000..((b + 1) * 1000).min(events))
                .map(|i| event_json(prefix, i, tenants, spread))
                .collect();
            serde_json::to_vec(&serde_json::json!({ "events": evs }))
                .unwrap()
                .into()
        })
        .collect()
}

/// One event per tenant and UTC day the spread touches (and one at the spread's start), in batches
/// of 1,000: what a service that has been running holds before the measured events arrive.
fn warm_batches(args: &Args) -> Vec<axum::body::Bytes> {
    let now = Utc::now();
    let mut instants = vec![now - Duration::seconds(spread_seconds(&args.spread) as i64 - 1)];
    let days = spread_seconds(&args.spread) / 86_400;
    instants.extend((0..=days as i64).map(|d| now - Duration::days(d)));
    let events: Vec<_> = (0..args.tenants)
        .flat_map(|t| instants.iter().map(move |at| (t, *at)))
        .enumerate()
        .map(|(i, (t, at))| {
            serde_json::json!({
                "event_id": format!("warm-{i:09}"),
                "tenant_id": format!("tenant-{t:04}"),
                "type": "stt_words",
                "quantity": 1,
                "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
        })
        .collect();
    events
        .chunks(1000)
        .map(|chunk| {
            serde_json::to_vec(&serde_json::json!({ "events": chunk }))
                .unwrap()
                .into()
        })
        .collect()
}

/// Posts every batch with `clients` concurrent clients; returns events/s.
async fn batch_ingest(app: &App, label: &str, args: &Args) -> anyhow::Result<f64> {
    let bodies = Arc::new(batches(label, args.events, args.tenants, &args.spread));
    let started = Instant::now();
    let accepted = post_batches(app, bodies, args.clients).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted as usize == args.events,
        "accepted {accepted} of {}",
        args.events
    );
    Ok(args.events as f64 / secs)
}

/// Posts the batches with `clients` concurrent clients; returns the events accepted.
async fn post_batches(
    app: &App,
    bodies: Arc<Vec<axum::body::Bytes>>,
    clients: usize,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicUsize::new(0));
    let token = mint("service");
    let url = format!("{}/api/usage/events", app.base);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, token, url) = (bodies.clone(), next.clone(), token.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(
                    resp.status() == 200,
                    "batch refused: {}",
                    resp.text().await?
                );
                let v: serde_json::Value = resp.json().await?;
                accepted += v["accepted"].as_u64().unwrap_or(0);
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await??;
    }
    Ok(accepted)
}

/// Seconds until the background fold has caught up with everything ingested (no event left in the
/// tail): what the fold still had to do when the last batch was answered.
async fn folded_after(app: &App) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let left: i64 = with_pool!(&app.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM usage_tail").fetch_one(pool).await
        })?;
        // A transaction held open elsewhere on the server holds the fold back: give up after 2 min.
        if left == 0 || started.elapsed().as_secs() >= 120 {
            return Ok(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// COPY of the same rows (text format) into a table shaped like usage_events, with its indexes: one
/// stream, and `clients` streams of 1,000-row COPYs (a transaction each, as a batch is).
async fn copy_ceiling(url: &str, args: &Args) -> anyhow::Result<(f64, f64)> {
    let pool = PgPoolOptions::new()
        .max_connections(args.clients as u32 + 1)
        .connect(url)
        .await?;
    let rows: Vec<String> = (0..args.events)
        .map(|i| {
            let e = event_json("copy", i, args.tenants, &args.spread);
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                e["event_id"].as_str().unwrap(),
                e["tenant_id"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
                e["quantity"],
                e["occurred_at"].as_str().unwrap(),
                Utc::now().to_rfc3339(),
                1 + i % 900,
                e["metadata"].to_string().replace('\\', "\\\\"),
            )
        })
        .collect();
    let mut rates = Vec::new();
    for streams in [1usize, args.clients] {
        sqlx::query("DROP TABLE IF EXISTS usage_events_copy")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE TABLE usage_events_copy (LIKE usage_events INCLUDING ALL)")
            .execute(&pool)
            .await?;
        let chunk = if streams == 1 { rows.len() } else { 1000 };
        let chunks: Arc<Vec<String>> = Arc::new(rows.chunks(chunk).map(|c| c.concat()).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let (pool, chunks, next) = (pool.clone(), chunks.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(data) = chunks.get(i) else { break };
                    let mut copy = conn
                        .copy_in_raw(
                            "COPY usage_events_copy (event_id, tenant_id, usage_type, quantity, \
                             occurred_at, received_at, rollup_id, metadata) FROM STDIN",
                        )
                        .await?;
                    copy.send(data.as_bytes()).await?;
                    copy.finish().await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        rates.push(args.events as f64 / started.elapsed().as_secs_f64());
    }
    sqlx::query("DROP TABLE usage_events_copy")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok((rates[0], rates[1]))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(v, 0.5)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Latency {
    sent: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    achieved_rps: f64,
}

/// Open loop: request `i` is due at `start + i / rate`; its latency counts from then.
///
/// The requests are started by a thread of their own that sleeps until each one is due: tokio's timer
/// has a resolution of a millisecond, which would add up to a millisecond of the client's lateness to
/// every measurement. The thread never waits for answers, so a slow service cannot slow the sending.
async fn open_loop<F, Fut>(rate: u64, seconds: u64, make: F) -> anyhow::Result<Latency>
where
    F: Fn(usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let total = (rate * seconds) as usize;
    let start = Instant::now() + std::time::Duration::from_millis(50);
    let period = std::time::Duration::from_secs_f64(1.0 / rate as f64);
    let runtime = tokio::runtime::Handle::current();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for i in 0..total {
            let due = start + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let fut = make(i);
            let task = runtime.spawn(async move {
                fut.await?;
                anyhow::Ok(due.elapsed().as_secs_f64() * 1000.0)
            });
            if tx.send(task).is_err() {
                return;
            }
        }
    });
    let mut ms = Vec::with_capacity(total);
    while let Some(task) = rx.recv().await {
        ms.push(task.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(Latency {
        sent: total,
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
        max_ms: *ms.last().unwrap_or(&f64::NAN),
        achieved_rps: total as f64 / elapsed,
    })
}

async fn single_events(app: &App, label: &str, args: &Args) -> anyhow::Result<Latency> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let token = Arc::new(mint("service"));
    let url = Arc::new(format!("{}/api/usage/events", app.base));
    // Warm the connection pools (HTTP and database) before measuring.
    for i in 0..200 {
        let body = serde_json::json!({"events": [event_json(&format!("{label}-warm"), i, args.tenants, "hour")]});
        client
            .post(url.as_str())
            .bearer_auth(token.as_str())
            .json(&body)
            .send()
            .await?;
    }
    let (label, tenants) = (label.to_owned(), args.tenants);
    let per_request = args.per_request.max(1);
    let requests_per_second = (args.rate / per_request as u64).max(1);
    let send = |prefix: String| {
        let (client, token, url) = (client.clone(), token.clone(), url.clone());
        move |i: usize| {
            let (client, token, url) = (client.clone(), token.clone(), url.clone());
            let events: Vec<_> = (i * per_request..(i + 1) * per_request)
                .map(|n| event_json(&prefix, n, tenants, "hour"))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap();
            async move {
                let resp = client
                    .post(url.as_str())
                    .bearer_auth(token.as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 200, "refused: {}", resp.status());
                resp.bytes().await?;
                Ok(())
            }
        }
    };
    // A second at the same rate first, not measured: the client opens the connections that rate
    // needs, and the service's database connections run their statements once.
    open_loop(requests_per_second, 1, send(format!("{label}-ramp"))).await?;
    open_loop(requests_per_second, args.seconds, send(label)).await
}

/// Seeds `n` events over `tenants` tenants and 120 days (to today), with their rollups, folded, one
/// per tenant and day (as ingestion and `serve`'s fold leave them): older months claimed by earlier
/// runs, the previous month still open for half the tenants (late usage), a subscription per tenant (a
/// tenth still in trial this month), demo tenants, and invoices.
async fn seed_dashboard(url: &str, n: i64, tenants: i64, statistics: bool) -> anyhow::Result<()> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    let seeded: Option<i64> = sqlx::query_scalar("SELECT COUNT(*) FROM usage_events")
        .fetch_optional(&mut c)
        .await
        .ok()
        .flatten();
    if seeded == Some(n) {
        eprintln!("  (reusing the seeded schema)");
        return Ok(());
    }
    const DAYS: i64 = 120;
    let started = Instant::now();
    let tenant_rows = format!(
        "INSERT INTO tenants (id, name, subdomain, is_demo, created_at, updated_at)
         SELECT 'tenant-' || lpad(t::text, 4, '0'), 'Org ' || t, 'org' || t, t % 100 = 99, now(), now()
         FROM generate_series(0, {}) t",
        tenants - 1
    );
    for s in [
        "SET synchronous_commit = off",
        "SET maintenance_work_mem = '1GB'",
        &tenant_rows,
        "ALTER TABLE usage_events DROP CONSTRAINT usage_events_pkey",
        "DROP INDEX usage_events_rollup_tx",
        "DROP INDEX usage_events_tx",
    ] {
        if s == "VACUUM ANALYZE" && !statistics {
            // The service's fold reads every event once after its commit (which marks the rows'
            // transactions as committed on their pages); the seeding's INSERT bypassed it.
            eprintln!("  ... no VACUUM ANALYZE, no statistics; every event read once, as the fold reads it");
            sqlx::query("SELECT COUNT(*), SUM(quantity) FROM usage_events")
                .execute(&mut c)
                .await?;
            continue;
        }
        sqlx::query(s).execute(&mut c).await?;
    }
    let chunk = 1_000_000i64;
    let mut from = 0;
    while from < n {
        let to = (from + chunk).min(n) - 1;
        sqlx::query(
            "INSERT INTO usage_events (event_id, tenant_id, usage_type, quantity, occurred_at, received_at, rollup_id, metadata)
             SELECT 'seed-' || i, 'tenant-' || lpad((i % $4)::text, 4, '0'),
                    (ARRAY['stt_words', 'tts_words', 'phone_calls'])[k + 1],
                    CASE WHEN k = 2 THEN 1 ELSE 1 + i % 40 END,
                    ((current_date - ($3::int - 1) + d::int)::timestamp + make_interval(secs => (i * 7919) % 86400)) AT TIME ZONE 'UTC',
                    now(), 1 + (i % $4) * $3 + d, NULL
             FROM (SELECT i, (i / $4) % $3 AS d, (i / ($4 * $3)) % 3 AS k
                   FROM generate_series($1::bigint, $2::bigint) i) s",
        )
        .bind(from)
        .bind(to)
        .bind(DAYS)
        .bind(tenants)
        .execute(&mut c)
        .await?;
        from = to + 1;
        eprintln!(
            "  seeded {from} events ({:.0}s)",
            started.elapsed().as_secs_f64()
        );
    }
    let half = format!("tenant-{:04}", tenants / 2);
    let billed = format!(
        "UPDATE usage_rollups_folded SET billed_by = 'run:' || to_char(day, 'YYYY-MM') || ':' || tenant_id,
                billed_stt_words = stt_words, billed_tts_words = tts_words,
                billed_phone_calls = phone_calls, billed_at = now()
         WHERE day < date_trunc('month', current_date)::date
           AND (day < (date_trunc('month', current_date) - interval '1 month')::date OR tenant_id < '{half}')"
    );
    for s in [
        "ALTER TABLE usage_events ADD PRIMARY KEY (event_id)",
        "CREATE INDEX usage_events_rollup_tx ON usage_events (rollup_id, tx)",
        "CREATE INDEX usage_events_tx ON usage_events (tx)",
        // One folded rollup per tenant and day.
        "INSERT INTO usage_rollups_folded (id, tenant_id, day, shard, stt_words, tts_words, phone_calls, event_count)
         SELECT rollup_id, tenant_id, (occurred_at AT TIME ZONE 'UTC')::date, 0,
                COALESCE(SUM(quantity) FILTER (WHERE usage_type = 'stt_words'), 0),
                COALESCE(SUM(quantity) FILTER (WHERE usage_type = 'tts_words'), 0),
                COALESCE(SUM(quantity) FILTER (WHERE usage_type = 'phone_calls'), 0), COUNT(*)
         FROM usage_events GROUP BY 1, 2, 3",
        // The seeded events are in those sums: the fold's mark goes past them.
        "UPDATE usage_fold SET folded_through = pg_current_xact_id()",
        "SELECT setval(pg_get_serial_sequence('usage_rollups_folded', 'id'), (SELECT max(id) FROM usage_rollups_folded))",
        // Months before the previous one were billed by their runs; the previous month is still open
        // (late usage) for half the tenants.
        &billed,
        "INSERT INTO subscriptions (stripe_subscription_id, tenant_id, stripe_customer_id, status, price_id,
             amount_cents, current_period_start, current_period_end, trial_end,
             stripe_created_at, stripe_updated_at, synced_at)
         SELECT 'sub_' || id, id, 'cus_' || id, CASE WHEN right(id, 1) = '7' THEN 'trialing' ELSE 'active' END,
                'price_monthly', 29900, date_trunc('month', now()), date_trunc('month', now()) + interval '1 month',
                CASE WHEN right(id, 1) = '7' THEN date_trunc('month', now()) + interval '3 days 5 hours'
                     ELSE now() - interval '200 days' END,
                now() - interval '200 days', now(), now()
         FROM tenants",
        "INSERT INTO tenant_demo_periods (tenant_id, started_at) SELECT id, now() - interval '300 days' FROM tenants WHERE is_demo",
        "INSERT INTO invoices (stripe_invoice_id, tenant_id, stripe_customer_id, stripe_subscription_id,
             billing_period, status, period_start, period_end, amount_due_cents, amount_paid_cents,
             paid_at, lines_json, stripe_created_at, stripe_updated_at, synced_at)
         SELECT 'in_' || t.id || '_' || m, t.id, 'cus_' || t.id, 'sub_' || t.id,
                to_char(now() - make_interval(months => m), 'YYYY-MM'), 'paid',
                date_trunc('month', now()) - make_interval(months => m),
                date_trunc('month', now()) - make_interval(months => m - 1), 31629, 31629,
                date_trunc('month', now()) - make_interval(months => m - 1) + interval '2 hours',
                '[{\"description\": \"Voice Usage: 12,345 words (STT: 10,000, TTS: 2,345)\", \"amount_cents\": 1235}]',
                now() - make_interval(months => m - 1), now(), now()
         FROM tenants t, generate_series(1, 12) m",
        // The steady state autovacuum keeps: index entries of claimed rollups' old versions cleaned.
        "VACUUM ANALYZE",
    ] {
        if s == "VACUUM ANALYZE" && !statistics {
            // The service's fold reads every event once after its commit (which marks the rows'
            // transactions as committed on their pages); the seeding's INSERT bypassed it.
            eprintln!("  ... no VACUUM ANALYZE, no statistics; every event read once, as the fold reads it");
            sqlx::query("SELECT COUNT(*), SUM(quantity) FROM usage_events")
                .execute(&mut c)
                .await?;
            continue;
        }
        sqlx::query(s).execute(&mut c).await?;
        eprintln!("  ... ({:.0}s)", started.elapsed().as_secs_f64());
    }
    eprintln!("  seeding done in {:.0}s", started.elapsed().as_secs_f64());
    c.close().await?;
    Ok(())
}

/// Bytes stored per seeded event: the events table with its indexes and the rollups with theirs.
async fn bytes_per_event(url: &str, n: i64) -> anyhow::Result<(f64, f64)> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    let (events, rollups): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('usage_events'), pg_total_relation_size('usage_rollups_folded')",
    )
    .fetch_one(&mut c)
    .await?;
    c.close().await?;
    Ok((events as f64 / n as f64, rollups as f64 / n as f64))
}

/// The monthly run's claim (`claim_unbilled`) of `count` tenants whose previous month is still open
/// (about 30 open rollups each), one after the other: the time per claim.
async fn claims(app: &App, tenants: i64, count: i64, run: &str) -> anyhow::Result<Latency> {
    use thanotopolis_billing::domain::BillingPeriod;
    use thanotopolis_billing::usage::billable;
    let current = BillingPeriod::containing(Utc::now(), chrono_tz::UTC);
    let (start, _) = current.bounds(chrono_tz::UTC);
    // Unmeasured first: claims of tenants whose previous month is billed (nothing to claim), so that
    // each pooled connection has planned the claim's statements once, as in a running service.
    for t in 0..50.min(tenants / 2) {
        let id = TenantId::parse(&format!("tenant-{t:04}")).map_err(anyhow::Error::msg)?;
        billable::claim_unbilled(
            &app.db,
            &id,
            start,
            chrono_tz::UTC,
            &format!("bench:{run}:warm:{t}"),
        )
        .await?;
    }
    let mut ms = Vec::new();
    let started = Instant::now();
    for i in 0..count {
        // Scattered over the half with the previous month open (a reused seed has some claimed).
        let t = tenants / 2 + (i * 7919) % (tenants / 2);
        let id = TenantId::parse(&format!("tenant-{t:04}")).map_err(anyhow::Error::msg)?;
        let at = Instant::now();
        billable::claim_unbilled(
            &app.db,
            &id,
            start,
            chrono_tz::UTC,
            &format!("bench:{run}:{t}"),
        )
        .await?;
        ms.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(Latency {
        sent: ms.len(),
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        max_ms: *ms.last().unwrap_or(&f64::NAN),
        achieved_rps: ms.len() as f64 / started.elapsed().as_secs_f64(),
    })
}

async fn dashboard(app: &App, args: &Args) -> anyhow::Result<(Latency, Latency)> {
    let tenants = args.dashboard_tenants as usize;
    let client = reqwest::Client::new();
    let super_admin = Arc::new(mint("super_admin"));
    let base = Arc::new(app.base.clone());
    let make = |client: reqwest::Client| {
        let (super_admin, base) = (super_admin.clone(), base.clone());
        move |i: usize| {
            let (client, token, base) = (client.clone(), super_admin.clone(), base.clone());
            async move {
                // Tenants in a scattered order, so that each read finds cold-ish pages too.
                let tenant = (i * 7919) % tenants;
                let resp = client
                    .get(format!(
                        "{base}/api/billing/dashboard?tenant_id=tenant-{tenant:04}"
                    ))
                    .bearer_auth(token.as_str())
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 200, "dashboard: {}", resp.status());
                resp.bytes().await?;
                Ok(())
            }
        }
    };
    // Warm up.
    for i in 0..200 {
        make(client.clone())(i).await?;
    }
    // Closed loop (one request at a time), then open loop at 200 requests/s.
    let mut ms = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed().as_secs() < args.seconds {
        let t = Instant::now();
        make(client.clone())(i).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        i += 1;
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let closed = Latency {
        sent: ms.len(),
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        max_ms: *ms.last().unwrap(),
        achieved_rps: ms.len() as f64 / started.elapsed().as_secs_f64(),
    };
    let open = open_loop(200, args.seconds, make(client.clone())).await?;
    Ok((closed, open))
}

/// The steady-rate run's label: single events, or events in requests of `--per-request`.
fn steady_label(store: &str, args: &Args) -> String {
    match args.per_request {
        0 | 1 => format!("{store} single event at {}/s", args.rate),
        n => format!("{store} {} events/s in requests of {n}", args.rate),
    }
}

fn show(label: &str, l: &Latency) {
    println!(
        "{label:<44} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests, {:.0}/s; load {})",
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        l.sent,
        l.achieved_rps,
        load()
    );
}

/// The machine's load averages (1, 5 and 15 minutes), as `uptime` shows them: the benchmark shares
/// its cores with whatever else runs.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let skip = |part: &str| args.skip.iter().any(|s| s == part);
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    println!(
        "usage_bench: {} events per batch run, {} clients, batches of 1,000; {} cores; load {}",
        args.events,
        args.clients,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load()
    );
    // What every ingestion figure is of: the tenants, when the events occurred, the rollups a batch
    // touches.
    let mix_label = format!(
        "{} tenants, {}, {:.0} rollups/batch, {}",
        args.tenants,
        if args.spread == "month" {
            "last 30 days"
        } else {
            "last hour"
        },
        rollups_per_batch(&args),
        if args.warm {
            "rollups there before"
        } else {
            "rollups created as it runs"
        }
    );

    if !skip("batch") || !skip("copy") {
        // Rounds alternate ingestion and COPY, each on a fresh schema, so that what the machine does
        // meanwhile (checkpoints, other work) weighs on both alike; the medians are compared.
        let (mut ingest, mut one, mut many) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=args.rounds {
            let schema = format!("bench_{run}_{round}");
            let url = pg_schema(&args.pg, &schema).await?;
            let app = spawn(&url).await?;
            add_tenants(&app.db, args.tenants).await?;
            if args.warm {
                post_batches(&app, Arc::new(warm_batches(&args)), args.clients).await?;
                folded_after(&app).await?;
            }
            let mut line = format!("  round {round}:");
            if !skip("batch") {
                let rate = batch_ingest(&app, &format!("pg{round}"), &args).await?;
                let behind = folded_after(&app).await?;
                line += &format!(
                    " ingestion {rate:.0} events/s (all folded {behind:.1} s after the last answer)"
                );
                ingest.push(rate);
            }
            if !skip("copy") {
                let (o, m) = copy_ceiling(&url, &args).await?;
                line += &format!(", COPY {o:.0} and {m:.0} rows/s");
                one.push(o);
                many.push(m);
            }
            eprintln!("{line} (load {})", load());
            app.db.close().await;
            drop_schema(&args.pg, &schema).await?;
        }
        let rounds = format!("median of {}", args.rounds);
        if !ingest.is_empty() {
            println!(
                "{:<44} {:>10.0} events/s ({rounds}; {mix_label})",
                "PostgreSQL batch ingestion (HTTP)",
                median(&mut ingest)
            );
        }
        if !one.is_empty() {
            let (o, m) = (median(&mut one), median(&mut many));
            println!(
                "{:<44} {o:>10.0} rows/s ({rounds})",
                "PostgreSQL COPY, one stream"
            );
            println!(
                "{:<44} {m:>10.0} rows/s ({rounds})",
                format!("PostgreSQL COPY, {} streams of 1,000 rows", args.clients)
            );
            if !ingest.is_empty() {
                println!(
                    "{:<44} {:>10.0} % ({mix_label}; load {})",
                    "batch ingestion / best COPY",
                    100.0 * median(&mut ingest) / o.max(m),
                    load()
                );
            }
        }
    }

    if !skip("single") {
        let schema = format!("bench_{run}_single");
        let url = pg_schema(&args.pg, &schema).await?;
        let app = spawn(&url).await?;
        add_tenants(&app.db, args.tenants).await?;
        settle(&args.pg).await?;
        let l = single_events(&app, "pg-single", &args).await?;
        show(&steady_label("PostgreSQL", &args), &l);
        app.db.close().await;
        drop_schema(&args.pg, &schema).await?;
    }

    if !skip("sqlite") {
        let dir = std::env::temp_dir().join(format!("usage-bench-{run}"));
        std::fs::create_dir_all(&dir)?;
        let app = spawn(&format!("sqlite://{}/bench.db", dir.display())).await?;
        add_tenants(&app.db, args.tenants).await?;
        if !skip("batch") {
            let rate = batch_ingest(&app, "lite", &args).await?;
            println!(
                "{:<44} {rate:>10.0} events/s ({mix_label})",
                "SQLite batch ingestion (HTTP)"
            );
        }
        if !skip("single") {
            let l = single_events(&app, "lite-single", &args).await?;
            show(&steady_label("SQLite", &args), &l);
        }
        app.db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    if !skip("dashboard") {
        let schema = format!(
            "bench_dashboard_{}_{}",
            args.dashboard_events, args.dashboard_tenants
        );
        let url = pg_schema(&args.pg, &schema).await?;
        let app = spawn(&url).await?;
        eprintln!(
            "seeding {} events over {} tenants",
            args.dashboard_events, args.dashboard_tenants
        );
        let seeding = Instant::now();
        seed_dashboard(
            &url,
            args.dashboard_events,
            args.dashboard_tenants,
            !args.no_statistics,
        )
        .await?;
        let (per_event, rollups_per_event) = bytes_per_event(&url, args.dashboard_events).await?;
        println!(
            "{:<44} {:.0} s; {per_event:.0} bytes per event (events and their indexes), {rollups_per_event:.1} (rollups); load {}",
            format!(
                "seeded {} events, {} tenants",
                args.dashboard_events, args.dashboard_tenants
            ),
            seeding.elapsed().as_secs_f64(),
            load()
        );
        settle(&args.pg).await?;
        let (closed, open) = dashboard(&app, &args).await?;
        let over = format!(
            "{}M events, {} tenants",
            args.dashboard_events / 1_000_000,
            args.dashboard_tenants
        );
        show(&format!("dashboard, one client ({over})"), &closed);
        show(&format!("dashboard at 200/s ({over})"), &open);
        if args.claims > 0 {
            let c = claims(&app, args.dashboard_tenants, args.claims, &run).await?;
            show(&format!("claim of a month's usage ({over})"), &c);
        }
        app.db.close().await;
        if !args.keep_seed {
            drop_schema(&args.pg, &schema).await?;
        }
    }
    Ok(())
}
