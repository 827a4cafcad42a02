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
    pub client: reqwest::Client,
    pub db: Db,
    pub store: Store,
    pub database_url: String,
    /// Keeps the SQLite folder alive for the test's duration.
    _dir: Option<TempDir>,
}

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

/// Starts the service on a fresh database after letting `configure` adjust its variables.
pub async fn spawn_app_with(
    store: Store,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let (database_url, dir) = fresh_database(store).await;
    let mut vars = base_vars(&database_url);
    configure(&mut vars);
    let settings = Settings::from_vars(&vars).expect("test settings are valid");
    let app = Application::build(settings, Secret::new(JWT_SECRET))
        .await
        .expect("the service starts");
    let address = format!("http://{}", app.local_addr());
    let db = app.state().db.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        store,
        database_url,
        _dir: dir,
    }
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
