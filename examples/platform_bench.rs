//! The platform follower's speed: catching up on a backlog of the platform's `usage_records` against our own
//! HTTP batch ingestion, and the lag while the platform writes at a steady rate.
//!
//! ```sh
//! cargo run --release --example platform_bench -- --backlog 10000000 --http-events 1000000 --rate 2000 --seconds 60
//! # --pg URL (the PostgreSQL server; the databases platform_bench and billing_bench are made on it),
//! # --tenants N (100), --clients N (4, the HTTP part's concurrent clients), --late N (100, the sweep part),
//! # --skip http|backlog|sweep|live
//! ```
//!
//! - **http**: `--http-events` events in batches of 1,000 posted by `--clients` clients to the service
//!   (in-process, as `serve` builds it, folding as `serve` does), the events the follower would make of
//!   the same rows: events/s from the first request to the last answer.
//! - **backlog**: `--backlog` rows seeded with SQL into the platform's tables (testdata/platform/schema.sql)
//!   over the last three hours, words and calls in turn; then one follower, from an empty billing schema,
//!   reads and ingests all of them: rows/s, and the ratio to the http part.
//! - **sweep** (after the backlog, on its rows): `--late` rows stamped at random times of the backlog's
//!   three hours are committed now (as a platform session idle for hours would write them), then one whole
//!   pass of the follower's sweep over the backlog: its duration, rows read per second, the time of each
//!   batch (one per pass of the follower: what the platform's database serves at a time), and the late
//!   rows found.
//! - **live**: the platform writes `--rate` rows/s for `--seconds`, each row its own transaction with the
//!   server's `now()` as `record_usage` does, from 8 connections, open loop; a follower as `serve` runs it
//!   (default pace: a read every 250 ms up to 1 s before the platform's clock, re-reads every 10 s). The
//!   lag of each row: from its `created_at` to when our ingestion received it (`usage_events.received_at`).

use chrono::{Duration, Utc};
use clap::Parser;
use sqlx::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use thanotopolis_billing::auth::jwt::{self, Claims};
use thanotopolis_billing::config::{Secret, Settings};
use thanotopolis_billing::platform::{follow, store, Follower, Options, Source};
use thanotopolis_billing::shutdown;
use thanotopolis_billing::startup::Application;
use thanotopolis_billing::state::AppState;
use thanotopolis_billing::usage;

const SECRET: &str = "platform-bench-secret";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg: String,
    #[arg(long, default_value_t = 10_000_000)]
    backlog: i64,
    #[arg(long, default_value_t = 1_000_000)]
    http_events: usize,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    late: i64,
    #[arg(long)]
    skip: Vec<String>,
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A fresh schema in `database` (created if missing) and the URL whose connections use it.
async fn schema(server: &str, database: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(database)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await?;
    }
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/{database}")).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut conn)
        .await?;
    Ok(format!(
        "{server}/{database}?options=-c%20search_path%3D{name}"
    ))
}

/// The platform's tables and `tenants` organizations; returns their ids.
async fn platform(url: &str, tenants: usize) -> anyhow::Result<(sqlx::PgPool, Vec<String>)> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(url)
        .await?;
    sqlx::raw_sql(include_str!("../testdata/platform/schema.sql"))
        .execute(&pool)
        .await?;
    let mut ids = Vec::new();
    for i in 0..tenants {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO tenants (id, name, subdomain, access_code, is_active, is_demo)
             VALUES ($1::uuid, $2, $3, 'x', TRUE, FALSE)",
        )
        .bind(&id)
        .bind(format!("Org {i}"))
        .bind(format!("org-{i}"))
        .execute(&pool)
        .await?;
        ids.push(id);
    }
    Ok((pool, ids))
}

fn settings(database_url: &str, platform_url: Option<&str>) -> anyhow::Result<Settings> {
    let mut vars = HashMap::from([
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("JWT_SECRET".to_owned(), SECRET.to_owned()),
    ]);
    if let Some(p) = platform_url {
        vars.insert("PLATFORM_DATABASE_URL".into(), p.into());
    }
    Ok(Settings::from_vars(&vars)?)
}

/// The service as `serve` builds it, folding as `serve` does; returns its address and state.
async fn spawn(database_url: &str) -> anyhow::Result<(String, AppState)> {
    let app = Application::build(settings(database_url, None)?, Secret::new(SECRET)).await?;
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    let db = state.db.clone();
    tokio::spawn(async move {
        loop {
            let started = Instant::now();
            if usage::fold::fold(&db).await.is_err() {
                break;
            }
            tokio::time::sleep(usage::fold::pause_after(started.elapsed())).await;
        }
    });
    Ok((base, state))
}

/// The events the follower makes of rows `i`: words and calls in turn, over the last hour.
fn event(i: usize, tenants: &[String]) -> serde_json::Value {
    let kinds = ["stt_words", "tts_words", "phone_calls"];
    let kind = kinds[i % 3];
    let at = Utc::now() - Duration::seconds((i % 3600) as i64);
    let id = uuid::Uuid::new_v4();
    let mut e = serde_json::json!({
        "event_id": if kind == "phone_calls" { format!("call:{id}") } else { format!("usage_records:{id}") },
        "tenant_id": tenants[i % tenants.len()],
        "type": kind,
        "quantity": if kind == "phone_calls" { 1 } else { 1 + i % 40 },
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    if kind == "phone_calls" {
        e["metadata"] = serde_json::json!({"usage_record_id": uuid::Uuid::new_v4().to_string(), "usage_type": "telephony_minutes"});
    }
    e
}

async fn http_part(args: &Args, run: &str) -> anyhow::Result<f64> {
    let url = schema(&args.pg, "billing_bench", &format!("pb_http_{run}")).await?;
    let (base, state) = spawn(&url).await?;
    let tenants: Vec<String> = (0..args.tenants)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    for (i, t) in tenants.iter().enumerate() {
        thanotopolis_billing::db::tenants::add(
            &state.db,
            &thanotopolis_billing::domain::TenantId::parse(t).unwrap(),
            &format!("Org {i}"),
            &format!("org-{i}"),
        )
        .await?;
    }
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.http_events)
            .collect::<Vec<_>>()
            .chunks(1000)
            .map(|c| {
                let events: Vec<_> = c.iter().map(|i| event(*i, &tenants)).collect();
                serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
            })
            .collect(),
    );
    let token = jwt::sign(
        &Claims {
            sub: "bench".into(),
            tenant_id: "platform".into(),
            role: "service".into(),
            exp: Utc::now().timestamp() + 86_400,
            email: None,
        },
        SECRET.as_bytes(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (bodies, next, token, url) = (
            bodies.clone(),
            next.clone(),
            token.clone(),
            format!("{base}/api/usage/events"),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = 0u64;
            while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 200, "refused: {}", resp.text().await?);
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
    let rate = args.http_events as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(accepted as usize == args.http_events, "accepted {accepted}");
    println!(
        "http: {} events in batches of 1,000 by {} clients, {} tenants: {rate:.0} events/s (load {})",
        args.http_events,
        args.clients,
        args.tenants,
        load()
    );
    Ok(rate)
}

async fn backlog_part(args: &Args, run: &str, sweep: bool) -> anyhow::Result<f64> {
    let purl = schema(&args.pg, "platform_bench", &format!("pb_backlog_{run}")).await?;
    let (pool, _) = platform(&purl, args.tenants).await?;
    let seeding = Instant::now();
    let chunk = 1_000_000i64;
    let mut done = 0i64;
    while done < args.backlog {
        let n = chunk.min(args.backlog - done);
        // Three hours back to fifteen minutes back, in row order; words and calls in turn.
        sqlx::query(
            "WITH t AS (SELECT array_agg(id ORDER BY id) AS ids FROM tenants)
             INSERT INTO usage_records (id, tenant_id, usage_type, amount, cost_cents, cost_currency,
                                        additional_data, usage_date, created_at)
             SELECT gen_random_uuid(), t.ids[1 + (g % array_length(t.ids, 1))],
                    (ARRAY['stt_words', 'tts_words', 'telephony_minutes'])[1 + g % 3], 1 + g % 40, 0, 'USD',
                    CASE WHEN g % 3 = 2 THEN json_build_object('call_id', gen_random_uuid()::text)
                         ELSE '{}'::json END,
                    ts, ts
             FROM t, generate_series($1::bigint, $2::bigint) AS g,
                  LATERAL (SELECT now() - interval '3 hours'
                                  + (g::float8 / $3::float8) * interval '165 minutes' AS ts) AS s",
        )
        .bind(done)
        .bind(done + n - 1)
        .bind(args.backlog)
        .execute(&pool)
        .await?;
        done += n;
        eprint!("\rseeding the platform: {done}/{}   ", args.backlog);
    }
    sqlx::query("VACUUM ANALYZE usage_records")
        .execute(&pool)
        .await?;
    eprintln!();
    println!(
        "backlog: {} rows seeded in {:.0} s",
        args.backlog,
        seeding.elapsed().as_secs_f64()
    );
    let url = schema(&args.pg, "billing_bench", &format!("pb_backlog_{run}")).await?;
    let (_, state) = spawn(&url).await?;
    let state = AppState::new(
        state.db.clone(),
        Arc::new(settings(&url, Some(&purl))?),
        Secret::new(SECRET),
    );
    store::init(&state.db, Utc::now() - Duration::hours(4)).await?;
    let source = Source::connect_lazy(&purl)?;
    let mut follower = Follower::new(
        state.clone(),
        source,
        Options::new(std::time::Duration::from_secs(600)),
    );
    let load_before = load();
    let started = Instant::now();
    follower.pass().await?;
    let secs = started.elapsed().as_secs_f64();
    let st = store::load(&state.db).await?.expect("following");
    anyhow::ensure!(
        st.rows_taken == args.backlog,
        "taken {} of {}",
        st.rows_taken,
        args.backlog
    );
    let rate = args.backlog as f64 / secs;
    println!(
        "backlog: {} rows caught up in {secs:.1} s: {rate:.0} rows/s (load before {load_before}, after {})",
        args.backlog,
        load()
    );
    if sweep {
        follower.release().await;
        sweep_part(args, &state, &pool, &purl).await?;
    }
    Ok(rate)
}

/// One whole sweep pass over the backlog, with `--late` rows committed after the follower's first read.
async fn sweep_part(
    args: &Args,
    state: &AppState,
    pool: &sqlx::PgPool,
    purl: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "WITH t AS (SELECT array_agg(id ORDER BY id) AS ids FROM tenants)
         INSERT INTO usage_records (id, tenant_id, usage_type, amount, cost_cents, cost_currency,
                                    additional_data, usage_date, created_at)
         SELECT gen_random_uuid(), t.ids[1 + (g % array_length(t.ids, 1))], 'stt_words', 7, 0, 'USD', '{}',
                ts, ts
         FROM t, generate_series(1, $1::bigint) AS g,
              LATERAL (SELECT now() - interval '3 hours' + random() * interval '165 minutes' AS ts) AS s",
    )
    .bind(args.late)
    .execute(pool)
    .await?;
    let mut opts = Options::new(std::time::Duration::from_secs(600));
    opts.sweep_every = std::time::Duration::ZERO;
    let mut follower = Follower::new(state.clone(), Source::connect_lazy(purl)?, opts);
    anyhow::ensure!(follower.lease().await?, "the lease");
    let load_before = load();
    let started = Instant::now();
    let mut batches = Vec::new();
    loop {
        let at = Instant::now();
        anyhow::ensure!(follower.sweep().await?, "the lease");
        batches.push(at.elapsed().as_secs_f64());
        let st = store::load(&state.db).await?.expect("following");
        if st.sweep.pass.is_none() {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let st = store::load(&state.db).await?.expect("following");
    anyhow::ensure!(
        st.rows_swept == args.late,
        "found {} of {}",
        st.rows_swept,
        args.late
    );
    batches.sort_by(f64::total_cmp);
    let pct = |p: f64| batches[((batches.len() - 1) as f64 * p).round() as usize] * 1000.0;
    println!(
        "sweep: {} rows read in {secs:.1} s ({:.0} rows/s), {} batches of up to 50,000: p50 {:.0} ms, \
         p99 {:.0} ms, max {:.0} ms; {} late rows found (load before {load_before}, after {})",
        st.sweep.scanned,
        st.sweep.scanned as f64 / secs,
        batches.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        st.rows_swept,
        load()
    );
    follower.release().await;
    Ok(())
}

async fn live_part(args: &Args, run: &str) -> anyhow::Result<()> {
    let purl = schema(&args.pg, "platform_bench", &format!("pb_live_{run}")).await?;
    let (pool, tenants) = platform(&purl, args.tenants).await?;
    let url = schema(&args.pg, "billing_bench", &format!("pb_live_{run}")).await?;
    let (_, state) = spawn(&url).await?;
    let state = AppState::new(
        state.db.clone(),
        Arc::new(settings(&url, Some(&purl))?),
        Secret::new(SECRET),
    );
    let (trigger, stop) = shutdown::channel();
    let source = Source::connect_lazy(&purl)?;
    let follower = tokio::spawn(follow::run(
        state.clone(),
        source,
        Options::new(std::time::Duration::from_secs(600)),
        stop,
    ));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let writers = 8u64;
    let total = args.rate * args.seconds;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (pool, tenants) = (pool.clone(), tenants.clone());
        let (rate, n) = (args.rate, total);
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let due = std::time::Duration::from_secs_f64(i as f64 / rate as f64);
                let elapsed = started.elapsed();
                if due > elapsed {
                    tokio::time::sleep(due - elapsed).await;
                }
                let kind = ["stt_words", "tts_words", "telephony_minutes"][(i % 3) as usize];
                sqlx::query(
                    "INSERT INTO usage_records (id, tenant_id, usage_type, amount, cost_cents, additional_data)
                     VALUES (gen_random_uuid(), $1::uuid, $2, $3, 0,
                             json_build_object('call_id', gen_random_uuid()::text))",
                )
                .bind(&tenants[(i as usize) % tenants.len()])
                .bind(kind)
                .bind(1 + (i % 40) as i32)
                .execute(&pool)
                .await?;
                i += writers;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let wrote = started.elapsed().as_secs_f64();
    let load_at = load();
    // Until every row is in (the last rows need the settle second and a read).
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let count = |db: thanotopolis_billing::db::Db| async move {
        thanotopolis_billing::with_pool!(&db, p => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM usage_events").fetch_one(p).await
        })
    };
    while count(state.db.clone()).await? < total as i64 && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    trigger.fire();
    follower.await?;
    let (n, p50, p99, max): (i64, f64, f64, f64) = thanotopolis_billing::with_pool!(&state.db, p => {
        sqlx::query_as(
            "SELECT COUNT(*),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM received_at - occurred_at))::float8,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM received_at - occurred_at))::float8,
                    MAX(EXTRACT(EPOCH FROM received_at - occurred_at))::float8
             FROM usage_events",
        )
        .fetch_one(p)
        .await
    })?;
    println!(
        "live: {total} rows written at {} rows/s for {} s (took {wrote:.1} s; load {load_at}); {n} ingested; \
         lag p50 {p50:.2} s, p99 {p99:.2} s, max {max:.2} s",
        args.rate, args.seconds
    );
    anyhow::ensure!(n == total as i64, "ingested {n} of {total}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let skip = |p: &str| args.skip.iter().any(|s| s == p);
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    println!("platform_bench, load at start {}", load());
    let http = if skip("http") {
        None
    } else {
        Some(http_part(&args, &run).await?)
    };
    if !skip("backlog") {
        let backlog = backlog_part(&args, &run, !skip("sweep")).await?;
        if let Some(http) = http {
            println!(
                "backlog catch-up / http batch ingestion: {:.0} %",
                100.0 * backlog / http
            );
        }
    }
    if !skip("live") {
        live_part(&args, &run).await?;
    }
    Ok(())
}
