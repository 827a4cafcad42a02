//! `spawn_app`: the real service on port 0 over a fresh database, and the tools tests use to talk to it.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;
use thanotopolis_billing::auth::jwt::{self, Claims};
use thanotopolis_billing::config::{Secret, Settings};
use thanotopolis_billing::db::Db;
use thanotopolis_billing::startup::Application;

pub const JWT_SECRET: &str = "test-jwt-secret-with-enough-entropy";

/// Which storage backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// Generates, for each named `async fn(TestApp)`, a module with one test per storage backend.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::spawn_app($crate::helpers::Store::Sqlite).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::spawn_app($crate::helpers::Store::Postgres).await).await;
                }
            }
        )*
    };
}

#[allow(dead_code)] // Fields used by some test modules only.
pub struct TestApp {
    pub address: String,
    /// The Stripe simulator this app talks to (`http://127.0.0.1:PORT`).
    pub sim: String,
    pub client: reqwest::Client,
    pub db: Db,
    pub store: Store,
    pub database_url: String,
    /// Keeps the SQLite folder alive for the test's duration.
    _dir: Option<TempDir>,
    _sim: stripe_sim::SimHandle,
}

pub const WEBHOOK_SECRET: &str = "whsec_test_secret_for_the_api_tests";

/// Variables every test app starts from; tests override through [`spawn_app_with`].
pub fn base_vars(database_url: &str) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
    ])
}

pub async fn spawn_app(store: Store) -> TestApp {
    spawn_app_with(store, |_| {}).await
}

/// Starts a Stripe simulator that delivers its webhooks to the service, with the monthly price created
/// in it, then the service on a fresh database pointed at it, after `configure` adjusts the variables.
pub async fn spawn_app_with(
    store: Store,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    spawn(store, configure, |_| {}, false).await
}

/// [`spawn_app_with`], then `adjust` changes the settings built from the variables (for what no
/// variable sets, such as how long a started run is waited for).
pub async fn spawn_app_with_settings(
    store: Store,
    configure: impl FnOnce(&mut HashMap<String, String>),
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn(store, configure, adjust, false).await
}

/// As [`spawn_app_with`], with the background tasks `serve` runs (the billing scheduler: the monthly run
/// and the collection work, every `BILLING_SCHEDULER_INTERVAL_SECONDS`).
pub async fn spawn_app_with_background(
    store: Store,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    spawn(store, configure, |_| {}, true).await
}

async fn spawn(
    store: Store,
    configure: impl FnOnce(&mut HashMap<String, String>),
    adjust: impl FnOnce(&mut Settings),
    background: bool,
) -> TestApp {
    let (database_url, dir) = fresh_database(store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (sim, mut vars) = simulator_for(&address, &database_url).await;
    configure(&mut vars);
    let mut settings = Settings::from_vars(&vars).expect("test settings are valid");
    adjust(&mut settings);
    let mut app = Application::build_with_listener(settings, Secret::new(JWT_SECRET), listener)
        .await
        .expect("the service starts");
    if background {
        app = app.with_background_tasks();
    }
    let db = app.state().db.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        sim: sim.base_url.clone(),
        client: reqwest::Client::new(),
        db,
        store,
        database_url,
        _dir: dir,
        _sim: sim,
    }
}

/// A Stripe simulator delivering its webhooks to the service at `address`, with the monthly price created
/// in it, and the service's variables pointing at both.
async fn simulator_for(
    address: &str,
    database_url: &str,
) -> (stripe_sim::SimHandle, HashMap<String, String>) {
    let sim = stripe_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        stripe_sim::SimConfig {
            webhook_url: Some(format!("{address}/api/billing/webhook")),
            webhook_secret: WEBHOOK_SECRET.to_owned(),
            webhook_retry_base: std::time::Duration::from_millis(50),
            webhook_max_attempts: 6,
        },
    )
    .await
    .expect("the simulator starts");
    let price_id = create_price(&sim.base_url).await;
    let mut vars = base_vars(database_url);
    vars.insert("STRIPE_API_BASE".into(), sim.base_url.clone());
    vars.insert("STRIPE_SECRET_KEY".into(), "sk_test_api_tests".into());
    vars.insert("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    vars.insert("STRIPE_MONTHLY_PRICE_ID".into(), price_id);
    vars.insert("STRIPE_MAX_REQUESTS_PER_SECOND".into(), "0".into());
    // Retries stay on, but quick: fault tests exhaust them on purpose.
    vars.insert("STRIPE_MAX_RETRIES".into(), "2".into());
    vars.insert("STRIPE_RETRY_BASE_MS".into(), "5".into());
    vars.insert("PUBLIC_BASE_URL".into(), address.to_owned());
    (sim, vars)
}

/// A second instance of the service on an existing database and simulator (a replica).
pub async fn spawn_replica_with(
    database_url: &str,
    sim: &str,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let mut vars = base_vars(database_url);
    vars.insert("STRIPE_API_BASE".into(), sim.to_owned());
    vars.insert("STRIPE_SECRET_KEY".into(), "sk_test_api_tests".into());
    vars.insert("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    vars.insert("STRIPE_MAX_REQUESTS_PER_SECOND".into(), "0".into());
    vars.insert("STRIPE_MAX_RETRIES".into(), "2".into());
    vars.insert("STRIPE_RETRY_BASE_MS".into(), "5".into());
    configure(&mut vars);
    let settings = Settings::from_vars(&vars).expect("test settings are valid");
    let app = Application::build_with_listener(settings, Secret::new(JWT_SECRET), listener)
        .await
        .expect("the replica starts");
    let db = app.state().db.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    // The replica needs no simulator of its own; a stopped one stands in for the handle.
    let idle = stripe_sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        stripe_sim::SimConfig::default(),
    )
    .await
    .expect("simulator");
    TestApp {
        address,
        sim: sim.to_owned(),
        client: reqwest::Client::new(),
        db,
        store: if database_url.starts_with("sqlite") {
            Store::Sqlite
        } else {
            Store::Postgres
        },
        database_url: database_url.to_owned(),
        _dir: None,
        _sim: idle,
    }
}

/// The $299/month price, as `stripe setup` makes it.
async fn create_price(sim: &str) -> String {
    let client = reqwest::Client::new();
    let product: Value = client
        .post(format!("{sim}/v1/products"))
        .bearer_auth("sk_test_setup")
        .form(&[("name", "Thanotopolis Platform Subscription")])
        .send()
        .await
        .expect("create product")
        .json()
        .await
        .unwrap();
    let price: Value = client
        .post(format!("{sim}/v1/prices"))
        .bearer_auth("sk_test_setup")
        .form(&[
            ("product", product["id"].as_str().unwrap()),
            ("unit_amount", "29900"),
            ("currency", "usd"),
            ("recurring[interval]", "month"),
        ])
        .send()
        .await
        .expect("create price")
        .json()
        .await
        .unwrap();
    price["id"].as_str().expect("price id").to_owned()
}

/// A new empty database: a SQLite file in a temporary folder, or a PostgreSQL schema of its own.
pub async fn fresh_database(store: Store) -> (String, Option<TempDir>) {
    match store {
        Store::Sqlite => {
            let dir = TempDir::new();
            (
                format!("sqlite://{}/billing.db", dir.path.display()),
                Some(dir),
            )
        }
        Store::Postgres => (fresh_postgres_schema().await, None),
    }
}

/// The server the PostgreSQL tests use; `TEST_POSTGRES_URL` overrides the machine's default.
fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

const TEST_DATABASE: &str = "billing_test";

/// Creates a schema named for this test inside the shared test database and returns a URL whose
/// connections use it (through `search_path`), so tests run in parallel without seeing each other.
async fn fresh_postgres_schema() -> String {
    static CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let server = postgres_server_url();
    CREATED
        .get_or_init(|| async {
            let admin = connect_pg(&format!("{server}/postgres")).await;
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(TEST_DATABASE)
                    .fetch_optional(&admin)
                    .await
                    .expect("query pg_database");
            if exists.is_none() {
                // Another test binary may race us to it; a duplicate is fine.
                let _ = sqlx::query(&format!("CREATE DATABASE {TEST_DATABASE}"))
                    .execute(&admin)
                    .await;
            }
            admin.close().await;
        })
        .await;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let pool = connect_pg(&format!("{server}/{TEST_DATABASE}")).await;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("create test schema");
    pool.close().await;
    format!("{server}/{TEST_DATABASE}?options=-c%20search_path%3D{schema}")
}

async fn connect_pg(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for these tests and is not reachable at {url}: {e}. \
                 Start it (scripts/test.sh does) or set TEST_POSTGRES_URL."
            )
        })
}

/// A temporary folder removed on drop.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let path =
            std::env::temp_dir().join(format!("billing-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Mints a token the way the platform does.
pub fn token(tenant_id: &str, role: &str) -> String {
    token_with(tenant_id, role, chrono::Utc::now().timestamp() + 3600)
}

pub fn token_with(tenant_id: &str, role: &str, exp: i64) -> String {
    let claims = Claims {
        sub: format!("user-{role}"),
        tenant_id: tenant_id.to_owned(),
        role: role.to_owned(),
        exp,
        email: None,
    };
    jwt::sign(&claims, JWT_SECRET.as_bytes())
}

pub fn super_admin() -> String {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN
        .get_or_init(|| token("platform", "super_admin"))
        .clone()
}

/// A response's status and JSON body (Null when the body is not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub async fn from(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

impl TestApp {
    /// A form POST to the simulator (its `/v1` API or `/_sim` control routes).
    pub async fn sim_post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        let resp = self
            .client
            .post(format!("{}{}", self.sim, path))
            .bearer_auth("sk_test_api_tests")
            .form(form)
            .send()
            .await
            .expect("simulator request");
        Reply::from(resp).await
    }

    /// Creates an object in the simulator (as made by hand in Stripe's dashboard) and returns its id.
    pub async fn sim_create(&self, path: &str, form: &[(&str, &str)]) -> String {
        self.sim_post(path, form).await.expect(200).body["id"]
            .as_str()
            .expect("the created object's id")
            .to_owned()
    }

    /// The monthly plan's Stripe price, as the plans route lists it.
    pub async fn plan_price_id(&self) -> String {
        self.get("/api/billing/subscription-plans", None)
            .await
            .expect(200)
            .body["plans"][0]["price_id"]
            .as_str()
            .expect("a price id")
            .to_owned()
    }

    pub async fn sim_get(&self, path: &str) -> Reply {
        let resp = self
            .client
            .get(format!("{}{}", self.sim, path))
            .bearer_auth("sk_test_api_tests")
            .send()
            .await
            .expect("simulator request");
        Reply::from(resp).await
    }

    /// Waits until every event the simulator emitted has been delivered to the service with a 2xx.
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let events = self.sim_get("/v1/events?limit=100").await.body;
            let deliveries = self.sim_get("/_sim/webhooks/deliveries").await.body;
            let delivered: std::collections::HashSet<&str> = deliveries["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| {
                    d["status"]
                        .as_u64()
                        .is_some_and(|s| (200..300).contains(&s))
                })
                .filter_map(|d| d["event_id"].as_str())
                .collect();
            let pending: Vec<&str> = events["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["id"].as_str())
                .filter(|id| !delivered.contains(id))
                .collect();
            if pending.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "webhooks not delivered: {pending:?}; deliveries: {deliveries}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Subscribes the tenant through checkout, paying with `card`, and waits for the webhooks.
    /// Returns the checkout session id.
    pub async fn subscribe(&self, tenant: &str, trial_days: Option<u32>, card: &str) -> String {
        let mut body = serde_json::json!({
            "success_url": "https://app.example.com/billing/success",
            "cancel_url": "https://app.example.com/billing/cancel",
        });
        if let Some(d) = trial_days {
            body["trial_days"] = d.into();
        }
        let session = self
            .post(
                "/api/billing/create-checkout-session",
                Some(&token(tenant, "org_admin")),
                &body,
            )
            .await
            .expect(200);
        let id = session.body["session_id"].as_str().unwrap().to_owned();
        self.complete_checkout(&id, card).await;
        id
    }

    /// Pays on the simulator's Checkout page with `card`, and waits for the webhooks.
    pub async fn complete_checkout(&self, session_id: &str, card: &str) {
        self.sim_post(
            &format!("/_sim/checkout/sessions/{session_id}/complete"),
            &[("card", card)],
        )
        .await
        .expect(200);
        self.settle().await;
    }

    /// The simulator's usage invoices for a tenant and period (by their `tenant_id` and `billing_period`
    /// metadata), with their lines.
    pub async fn usage_invoices(&self, tenant: &str, period: impl std::fmt::Display) -> Vec<Value> {
        let period = period.to_string();
        let list = self
            .sim_get("/v1/invoices?limit=100")
            .await
            .expect(200)
            .body;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| {
                i["metadata"]["tenant_id"] == tenant
                    && i["metadata"]["billing_period"] == period.as_str()
            })
            .cloned()
            .collect()
    }

    /// The one usage invoice of a tenant and period, asserted paid with one item per planned line.
    pub async fn assert_one_paid_usage_invoice(
        &self,
        tenant: &str,
        period: impl std::fmt::Display,
        lines: usize,
        label: &str,
    ) {
        let invs = self.usage_invoices(tenant, period).await;
        assert_eq!(invs.len(), 1, "{label}: one invoice");
        assert_eq!(
            invs[0]["lines"]["data"].as_array().unwrap().len(),
            lines,
            "{label}: one item per line"
        );
        assert_eq!(invs[0]["status"], "paid", "{label}");
    }

    /// Webhook events of `event_type` recorded in the last `days` days.
    pub async fn webhook_events_recorded(&self, event_type: &str, days: i64) -> i64 {
        let since = chrono::Utc::now() - chrono::Duration::days(days);
        thanotopolis_billing::db::webhook_events::count_since(&self.db, event_type, since)
            .await
            .unwrap()
    }

    /// Invoice items left pending in Stripe outside any invoice (they would land on some later invoice).
    pub async fn stray_invoice_items(&self) -> usize {
        let items = self
            .sim_get("/v1/invoiceitems?limit=100")
            .await
            .expect(200)
            .body;
        items["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["invoice"].is_null())
            .count()
    }

    /// Moves the simulator's clock forward.
    pub async fn advance_clock(&self, seconds: i64) {
        self.sim_post("/_sim/clock/advance", &[("seconds", &seconds.to_string())])
            .await
            .expect(200);
    }

    /// Our copy of the tenant's live subscription.
    pub async fn live_subscription(
        &self,
        tenant: &str,
    ) -> Option<thanotopolis_billing::db::subscriptions::SubscriptionRow> {
        thanotopolis_billing::db::subscriptions::live_for_tenant(&self.db, tenant)
            .await
            .unwrap()
    }

    /// The service's state over this app's database and simulator, for calling the library directly
    /// (the scheduler, a dry run of the current period).
    pub fn state(&self) -> thanotopolis_billing::state::AppState {
        let mut vars = base_vars(&self.database_url);
        vars.insert("STRIPE_API_BASE".into(), self.sim.clone());
        vars.insert("STRIPE_SECRET_KEY".into(), "sk_test_api_tests".into());
        vars.insert("STRIPE_MAX_REQUESTS_PER_SECOND".into(), "0".into());
        vars.insert("STRIPE_MAX_RETRIES".into(), "1".into());
        vars.insert("STRIPE_RETRY_BASE_MS".into(), "5".into());
        let settings = Settings::from_vars(&vars).expect("test settings are valid");
        thanotopolis_billing::state::AppState::new(
            self.db.clone(),
            std::sync::Arc::new(settings),
            Secret::new("x"),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> Reply {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    /// Records usage events, as the platform's services do.
    pub async fn record_usage(&self, events: Value) {
        self.post(
            "/api/usage/events",
            Some(&token("platform", "service")),
            &serde_json::json!({ "events": events }),
        )
        .await
        .expect(200);
    }

    /// Adds a tenant through the API, as an operator would.
    pub async fn add_tenant(&self, id: &str) {
        self.post(
            "/api/admin/tenants",
            Some(&super_admin()),
            &serde_json::json!({"id": id, "name": format!("Org {id}"), "subdomain": id}),
        )
        .await
        .expect(201);
    }
}

/// The real binary running `serve` as a child process, its output going to a log file.
pub struct ServiceProcess {
    child: tokio::process::Child,
    pub log: std::path::PathBuf,
}

impl ServiceProcess {
    /// Stops the service and returns everything it wrote to stdout and stderr.
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        std::fs::read_to_string(&self.log).expect("read the service log")
    }

    /// Sends SIGTERM, as a process manager does, and waits for the process to exit by itself (at most
    /// `within`); returns whether it exited successfully, and its log.
    pub async fn terminate(mut self, within: std::time::Duration) -> (bool, String) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(within, self.child.wait()).await;
        let ok = matches!(status, Ok(Ok(s)) if s.success());
        if status.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        (
            ok,
            std::fs::read_to_string(&self.log).expect("read the service log"),
        )
    }
}

/// Like [`spawn_app_with`], but the service is the built binary (`serve`) in a process of its own, with
/// only the variables given (`configure` adds more), run from a temporary folder so no `.env` applies.
pub async fn spawn_process_with(
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> (TestApp, ServiceProcess) {
    let dir = TempDir::new();
    let database_url = format!("sqlite://{}/billing.db", dir.path.display());
    // The child binds the port itself: find a free one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let (sim, mut vars) = simulator_for(&address, &database_url).await;
    vars.insert("BIND".into(), format!("127.0.0.1:{port}"));
    configure(&mut vars);
    let log = dir.path.join("service.log");
    let out = std::fs::File::create(&log).expect("create the log file");
    let err = out.try_clone().expect("clone the log file");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_thanotopolis-billing"))
        .arg("serve")
        .current_dir(&dir.path)
        .env_clear()
        .envs(&vars)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("start the service binary");
    let process = ServiceProcess { child, log };
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not start; its log:\n{}",
            std::fs::read_to_string(&process.log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let db = Db::connect(&database_url).await.expect("open the database");
    let app = TestApp {
        address,
        sim: sim.base_url.clone(),
        client,
        db,
        store: Store::Sqlite,
        database_url,
        _dir: Some(dir),
        _sim: sim,
    };
    (app, process)
}

/// The entry of `tenant` among a run report's `billed`.
pub fn billed_entry<'a>(report: &'a Value, tenant: &str) -> &'a Value {
    report["billed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["tenant_id"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} not billed: {report}"))
}

/// A Stripe invoice's lines as (description, amount in cents).
pub fn stripe_lines(invoice: &Value) -> Vec<(String, i64)> {
    invoice["lines"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap().to_owned(),
                l["amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Every event counts in a rollup of its own tenant, directly or through the merges, and every
/// rollup holds exactly the quantities of those events.
pub async fn assert_rollups_hold_their_events(db: &Db) {
    let homeless = scalar(
        db,
        "SELECT COUNT(*) FROM usage_events e
         WHERE NOT EXISTS (SELECT 1 FROM usage_rollups r WHERE r.id = e.rollup_id)
           AND NOT EXISTS (SELECT 1 FROM usage_rollup_merges m JOIN usage_rollups r ON r.id = m.into_id
                           WHERE m.merged_id = e.rollup_id)",
    )
    .await;
    assert_eq!(homeless, 0, "events without a rollup");
    let misplaced = scalar(
        db,
        "SELECT COUNT(*) FROM usage_events e JOIN usage_rollups r
             ON r.id = e.rollup_id
             OR r.id = (SELECT into_id FROM usage_rollup_merges WHERE merged_id = e.rollup_id)
         WHERE r.tenant_id <> e.tenant_id",
    )
    .await;
    assert_eq!(misplaced, 0, "events in another tenant's rollup");
    let mismatched = scalar(
        db,
        "SELECT COUNT(*) FROM usage_rollups r
         WHERE (r.stt_words, r.tts_words, r.phone_calls, r.event_count) <> (
             SELECT COALESCE(SUM(CASE WHEN e.usage_type = 'stt_words' THEN e.quantity ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN e.usage_type = 'tts_words' THEN e.quantity ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN e.usage_type = 'phone_calls' THEN e.quantity ELSE 0 END), 0),
                    COUNT(*)
             FROM usage_events e
             WHERE e.rollup_id = r.id
                OR e.rollup_id IN (SELECT merged_id FROM usage_rollup_merges WHERE into_id = r.id))",
    )
    .await;
    assert_eq!(mismatched, 0, "rollups that differ from their events");
}

/// The one integer a query returns (0 when it is NULL, as `SUM` over no rows is).
pub async fn scalar(db: &Db, sql: &str) -> i64 {
    thanotopolis_billing::with_pool!(db, pool => {
        sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(pool).await
    })
    .unwrap()
    .unwrap_or(0)
}
