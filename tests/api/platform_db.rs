//! The platform's database for the tests: its tables as its models define them (testdata/platform/schema.sql)
//! in a PostgreSQL schema of their own (standing for the platform's database), filled as its code fills them,
//! and a TCP proxy in front of it that a test cuts and restores (the shared server itself never stops).

use crate::helpers::{base_vars, TestApp};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thanotopolis_billing::config::{Secret, Settings};
use thanotopolis_billing::platform::Options;
use thanotopolis_billing::state::AppState;
use tokio::net::{TcpListener, TcpStream};

const PLATFORM_DATABASE: &str = "platform_test";

fn server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The platform's database: a schema of its own, reached directly (`pool`, as the platform's code writes)
/// or through `url` (what billing is given).
pub struct PlatformDb {
    pub pool: sqlx::PgPool,
    pub schema: String,
}

impl PlatformDb {
    pub async fn new() -> PlatformDb {
        static CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        CREATED
            .get_or_init(|| async {
                let admin = sqlx::PgPool::connect(&format!("{}/postgres", server()))
                    .await
                    .expect("PostgreSQL is required for the platform tests");
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                        .bind(PLATFORM_DATABASE)
                        .fetch_optional(&admin)
                        .await
                        .unwrap();
                if exists.is_none() {
                    let _ = sqlx::query(&format!("CREATE DATABASE {PLATFORM_DATABASE}"))
                        .execute(&admin)
                        .await;
                }
                admin.close().await;
            })
            .await;
        let schema = format!("p_{}", uuid::Uuid::new_v4().simple());
        let setup = sqlx::PgPool::connect(&format!("{}/{PLATFORM_DATABASE}", server()))
            .await
            .unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&setup)
            .await
            .unwrap();
        setup.close().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&PlatformDb::url_at(&server(), &schema))
            .await
            .unwrap();
        sqlx::raw_sql(include_str!("../../testdata/platform/schema.sql"))
            .execute(&pool)
            .await
            .expect("the platform's schema");
        PlatformDb { pool, schema }
    }

    fn url_at(server: &str, schema: &str) -> String {
        format!("{server}/{PLATFORM_DATABASE}?options=-c%20search_path%3D{schema}")
    }

    /// The URL billing is given, through `proxy` when there is one.
    pub fn url(&self, proxy: Option<&Proxy>) -> String {
        match proxy {
            Some(p) => PlatformDb::url_at(
                &format!("postgres://postgres@127.0.0.1:{}", p.port),
                &self.schema,
            ),
            None => PlatformDb::url_at(&server(), &self.schema),
        }
    }

    /// An organization, as the platform's sign-up makes it.
    pub async fn add_tenant(&self, name: &str, subdomain: &str, is_demo: bool) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO tenants (id, name, subdomain, access_code, is_active, is_demo)
             VALUES ($1::uuid, $2, $3, 'code', TRUE, $4)",
        )
        .bind(&id)
        .bind(name)
        .bind(subdomain)
        .bind(is_demo)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    /// The platform's demo switch (backend/app/api/billing.py:314-337 sets `tenant.is_demo`).
    pub async fn set_demo(&self, tenant: &str, is_demo: bool) {
        sqlx::query("UPDATE tenants SET is_demo = $2, updated_at = now() WHERE id = $1::uuid")
            .bind(tenant)
            .bind(is_demo)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// A row as `UsageTrackingService.record_usage` inserts it (usage_service.py:36-50): its own transaction,
    /// `created_at` and `usage_date` the server's `now()` unless `at` stands for a row of another day.
    pub async fn record(
        &self,
        tenant: &str,
        usage_type: &str,
        amount: &str,
        additional_data: Value,
        at: Option<DateTime<Utc>>,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO usage_records (id, tenant_id, usage_type, amount, cost_cents, cost_currency,
                 additional_data, usage_date, created_at)
             VALUES ($1::uuid, $2::uuid, $3, $4::numeric, 0, 'USD', $5::text::json,
                     COALESCE($6, now()), COALESCE($6, now()))",
        )
        .bind(&id)
        .bind(tenant)
        .bind(usage_type)
        .bind(amount)
        .bind(additional_data.to_string())
        .bind(at)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    /// The two rows one call leaves when both paths record it: the voice agent's (telephony_voice_agent.py
    /// :1236-1247) and Twilio's completed status (telephony_service.py:600-606).
    pub async fn record_call_twice(&self, tenant: &str, call: &str, at: Option<DateTime<Utc>>) {
        self.record(
            tenant,
            "telephony_minutes",
            "2",
            json!({"call_id": call, "call_sid": "CA1", "voice_agent_type": "deepgram_integrated"}),
            at,
        )
        .await;
        self.record(
            tenant,
            "telephony_minutes",
            "2",
            json!({"call_id": call, "call_sid": "CA1"}),
            at,
        )
        .await;
    }

    pub async fn execute(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.unwrap();
    }
}

/// A TCP proxy to PostgreSQL: `cut` drops every connection and refuses new ones until `restore`.
pub struct Proxy {
    pub port: u16,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let target = server()
            .rsplit('@')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let (o, c) = (open.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Proxy { port, open, conns }
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Settings for a follower of `platform_url` working on `app`'s database and simulator, as `serve` has.
pub fn follower_state(app: &TestApp, platform_url: &str) -> AppState {
    let mut vars = base_vars(&app.database_url);
    vars.insert("STRIPE_API_BASE".into(), app.sim.clone());
    vars.insert("STRIPE_SECRET_KEY".into(), "sk_test_api_tests".into());
    vars.insert("STRIPE_MAX_REQUESTS_PER_SECOND".into(), "0".into());
    vars.insert("STRIPE_MAX_RETRIES".into(), "2".into());
    vars.insert("STRIPE_RETRY_BASE_MS".into(), "5".into());
    vars.insert("PLATFORM_DATABASE_URL".into(), platform_url.into());
    let settings = Settings::from_vars(&vars).expect("valid settings");
    let db = app.db.clone();
    AppState::new(
        db,
        Arc::new(settings),
        Secret::new(crate::helpers::JWT_SECRET),
    )
}

/// The follower's pace in tests: everything every few hundred milliseconds, a short lease.
pub fn quick(lookback_s: u64) -> Options {
    let mut o = Options::new(Duration::from_secs(lookback_s));
    o.settle = Duration::from_millis(200);
    o.poll = Duration::from_millis(50);
    o.recheck_every = Duration::from_millis(300);
    o.tenants_every = Duration::from_millis(300);
    o.held_every = Duration::from_millis(300);
    o.lease = Duration::from_secs(2);
    o
}

/// Waits (at most 30 s) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
