use crate::helpers::TestApp;
use crate::store_tests;
use sqlx::Connection;

store_tests!(
    healthz_answers_without_auth,
    readyz_reports_the_database,
    responses_carry_a_request_id
);

async fn healthz_answers_without_auth(app: TestApp) {
    let reply = app.get("/healthz", None).await.expect(200);
    assert_eq!(reply.body["status"], "ok");
}

async fn readyz_reports_the_database(app: TestApp) {
    let reply = app.get("/readyz", None).await.expect(200);
    assert_eq!(reply.body["status"], "ready");
    // Once the database is gone, readiness must say so rather than lie.
    app.db.close().await;
    let reply = app.get("/readyz", None).await.expect(503);
    assert_eq!(reply.body["code"], "service_unavailable");
    assert!(
        !reply.text.to_lowercase().contains("sqlx"),
        "no internals: {}",
        reply.text
    );
}

async fn responses_carry_a_request_id(app: TestApp) {
    let reply = app.get("/healthz", None).await;
    let id = reply
        .headers
        .get("x-request-id")
        .expect("request id header");
    assert!(!id.is_empty());
}

/// PostgreSQL: when the server drops the service's pooled connections (a restart, a failover), the pool
/// replaces them: at most one failed check per connection it held, then the service is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_recovers_after_postgres_drops_the_connections() {
    let name = format!("readyz_{}", uuid::Uuid::new_v4().simple());
    let app = crate::helpers::spawn_app_with(crate::helpers::Store::Postgres, |vars| {
        let url = vars.get_mut("DATABASE_URL").unwrap();
        url.push_str(&format!("&application_name={name}"));
    })
    .await;
    for _ in 0..3 {
        app.get("/readyz", None).await.expect(200);
    }
    let thanotopolis_billing::db::Db::Postgres(pool) = &app.db else {
        unreachable!("a PostgreSQL app")
    };
    let mut admin = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    // A connection the pool is still opening counts in its size before the server lists it: wait until
    // both agree (on a busy machine this takes a moment).
    let mut held = pool.size();
    for _ in 0..100 {
        let listed: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        held = pool.size();
        if listed == i64::from(held) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let dropped: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        dropped.len() as u32,
        held,
        "every pooled connection was dropped"
    );
    let mut failed = 0;
    while app.get("/readyz", None).await.status != 200 {
        failed += 1;
        assert!(failed <= held, "still not ready after {failed} checks");
    }
    for _ in 0..5 {
        app.get("/readyz", None).await.expect(200);
    }
}

/// An unknown path under `/api/` answers the contract's JSON error, not an empty 404.
#[tokio::test]
async fn unknown_api_paths_are_json_404s() {
    let app = crate::helpers::spawn_app(crate::helpers::Store::Sqlite).await;
    for path in [
        "/api/nope",
        "/api/billing/nothing-here",
        "/api/admin/billing/runs/x/y",
    ] {
        let r = app.get(path, None).await.expect(404);
        assert_eq!(r.body["code"], "not_found", "{path}: {}", r.text);
        assert!(r.body["detail"].as_str().unwrap().contains(path));
    }
    // Outside the API, a plain 404.
    let r = app.get("/nothing-here", None).await.expect(404);
    assert!(r.body.is_null() || r.body["code"].is_null());
}

/// SIGTERM: `serve` finishes its requests, stops the billing scheduler and rollup compaction it started
/// (asleep for 15 minutes between rounds), and exits cleanly, promptly.
#[tokio::test]
async fn sigterm_stops_serve_and_its_background_tasks() {
    let (app, process) = crate::helpers::spawn_process_with(|_| {}).await;
    app.get("/healthz", None).await.expect(200);
    let (ok, log) = process.terminate(std::time::Duration::from_secs(20)).await;
    assert!(ok, "serve did not exit cleanly after SIGTERM: {log}");
    assert!(log.contains("billing scheduler stopped"), "{log}");
}

/// The binary with `args` and only the variables given, run from a fresh folder (no `.env`).
fn cli(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let dir = crate::helpers::TempDir::new();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"));
    cmd.args(args).env_clear().current_dir(&dir.path);
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

/// Commands say which database they opened; `bill` without Stripe refuses before running anything; an
/// unreachable PostgreSQL is named, with why, and without its password.
#[tokio::test]
async fn commands_say_what_they_opened_and_why_they_stop() {
    let dir = crate::helpers::TempDir::new();
    let db = format!("sqlite://{}/cli.db", dir.path.display());
    let out = cli(&["tenants", "list"], &[("DATABASE_URL", &db)]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("Database: {db}")), "{err}");

    let out = cli(&["bill", "--period", "2020-01"], &[("DATABASE_URL", &db)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Stripe is not configured") && err.contains("nothing was run"),
        "{err}"
    );

    let out = cli(
        &["tenants", "list"],
        &[(
            "DATABASE_URL",
            "postgres://billing:s3cret@127.0.0.1:1/billing",
        )],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PostgreSQL at 127.0.0.1:1") && err.contains("refused"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
