//! Storage: PostgreSQL in production, SQLite embedded; the backend is chosen by the URL's scheme.
//!
//! Queries are written once in the SQL both engines share (`$1` placeholders, `ON CONFLICT`, `RETURNING`)
//! and run on whichever pool is configured through [`with_pool!`]; where the engines differ, code matches
//! on [`Db`] explicitly.

pub mod audit;
pub mod billing_health;
pub mod checkout_sessions;
pub mod customers;
pub mod invoices;
pub mod locks;
mod migrate;
pub mod monthly_reports;
pub mod overview;
pub mod payment_methods;
pub mod rollups;
pub mod subscriptions;
pub mod tenants;
pub mod web_sessions;
pub mod webhook_events;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

pub use migrate::{migrate, migrate_through};

#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs `$body` with `$pool` bound to the concrete pool, once per backend (the body is compiled twice).
#[macro_export]
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

/// Opens a write transaction on `$pool`: `BEGIN IMMEDIATE` on SQLite so that concurrent writers queue on
/// the busy timeout instead of failing on a lock upgrade; a plain `BEGIN` on PostgreSQL.
#[macro_export]
macro_rules! begin_write {
    ($db:expr, $pool:ident, $tx:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => {
                #[allow(unused_mut)]
                let mut $tx = $pool.begin().await?;
                $body
            }
            $crate::db::Db::Sqlite($pool) => {
                #[allow(unused_mut)]
                let mut $tx = $pool.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
        }
    };
}

impl Db {
    /// Connects to `sqlite://path` (creating the file and its folder) or `postgres://...`.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid SQLite URL: {e}"))?;
            let path = options.get_filename().to_owned();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create the database folder {}: {e}",
                        parent.display()
                    )
                })?;
            }
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: an acknowledged write survives a power cut, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot open SQLite database {}: {e}", path.display())
                })?;
            Ok(Db::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?
                // Every statement here reads or writes a few rows. Without statistics (autovacuum
                // not run yet after a burst, or a restore) the planner can estimate thousands, past
                // jit_above_cost, and compile a 1 ms read for 10-80 ms on each call.
                .options([("jit", "off")]);
            // A quick look first: a refused or silent server is said at once, naming where it was
            // looked for, rather than after the pool's 10 s of retries.
            probe_postgres(&options).await?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                // A ping before every checkout is a round trip before every transaction; a
                // connection in steady use needs none. One idle for a while is checked first (the
                // server may have closed it meanwhile) and replaced if it does not answer.
                .test_before_acquire(false)
                .before_acquire(ping_if_idle)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| anyhow::anyhow!("{}", unreachable_postgres(url, &e)))?;
            Ok(Db::Postgres(pool))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

/// Connects to the server's TCP port once (a Unix socket is left to the driver).
async fn probe_postgres(options: &PgConnectOptions) -> anyhow::Result<()> {
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    if host.starts_with('/') {
        return Ok(());
    }
    let target = format!("{host}:{port}");
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(anyhow::anyhow!(
            "cannot connect to PostgreSQL at {target}: the connection was refused (is PostgreSQL running and listening there?)"
        )),
        Ok(Err(e)) => Err(anyhow::anyhow!("cannot connect to PostgreSQL at {target}: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "cannot connect to PostgreSQL at {target}: no answer within 5 s (a firewall, or the wrong host?)"
        )),
    }
}

/// Why PostgreSQL could not be reached, naming the host and port (never the password) and whether the
/// server refused or did not answer.
fn unreachable_postgres(url: &str, e: &sqlx::Error) -> String {
    let target = PgConnectOptions::from_str(url)
        .map(|o| format!("{}:{}", o.get_host(), o.get_port()))
        .unwrap_or_else(|_| "the configured server".to_owned());
    let why = match e {
        sqlx::Error::PoolTimedOut => {
            "it did not answer within 10 s (a firewall, or the wrong host?)".to_owned()
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "the connection was refused (is PostgreSQL running and listening there?)".to_owned()
        }
        other => other.to_string(),
    };
    format!("cannot connect to PostgreSQL at {target}: {why}")
}

/// How long a pooled PostgreSQL connection may sit idle before its next checkout pings it.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

fn ping_if_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if meta.idle_for < IDLE_BEFORE_PING {
            return Ok(true);
        }
        // `false` closes this connection; the pool then takes or opens another.
        Ok(sqlx::Connection::ping(conn).await.is_ok())
    })
}

/// Whether an error is a unique-constraint violation on the named constraint or index.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            // PostgreSQL names the constraint; SQLite names the columns in the message.
            db.constraint().is_none_or(|c| c == constraint)
        }
        _ => false,
    }
}

/// A span of time from its start to its end (None: still going).
pub type Span = (
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// Reads a tenant's spans with `sql` (its `$1` the tenant; the table's owner gives it, e.g.
/// `subscriptions::TRIAL_SPANS`) on whatever connection the caller holds: a pooled one, or the
/// transaction a claim reads them in, on either engine.
pub async fn spans<'c, E, DB>(
    conn: E,
    sql: &'static str,
    tenant: &str,
) -> Result<Vec<Span>, sqlx::Error>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Span: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_as::<DB, Span>(sql)
        .bind(tenant)
        .fetch_all(conn)
        .await
}
